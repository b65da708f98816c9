"""``AgentClient``: an agent calls verinfer's gateway and pays per call, under its wallet's policy.

Payment is the x402 SDK's client (402 challenge, signed EIP-3009 authorization, paid retry).
The wallet plugs into it at two points:

* a before-payment-creation hook reserves the amount under the policy, so the SDK never signs
  a payment the policy forbids (the call fails with the ``PolicyError`` instead);
* a client extension names each call with a payment identifier (the SDK's
  ``payment-identifier``), so a retry after a dropped connection is answered from the first
  delivery and never charged twice, even though the SDK signs a fresh authorization.

Each answer's receipt is verified before it is returned: signed by the node the model's terms
name, for this payer, this model and mode, at most the price reserved, over the very input and
output bytes returned. A call that fails is released from the ledger (the gateway charges only
delivered results); a call whose fate is unknown stays counted.
"""

from __future__ import annotations

import asyncio
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import httpx
from x402 import x402Client
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    append_payment_identifier_to_extensions,
    generate_payment_id,
)
from x402.http.clients import x402HttpxClient
from x402.http.clients.httpx import PaymentError
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload, PaymentRequired
from x402.schemas.hooks import AbortResult, PaymentCreationContext

from verinfer.agents.policy import Payment, PolicyError
from verinfer.agents.wallet import Wallet
from verinfer.chain.inference import InferenceMode
from verinfer.errors import VerinferError
from verinfer.gateway.receipts import Receipt, ReceiptError, SignedReceipt, verify_receipt


class GatewayCallError(VerinferError):
    """The gateway refused or failed the call; ``status`` and ``reason`` say why."""

    def __init__(self, status: int, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"the gateway answered {status}: {reason}", hint=hint)
        self.status = status
        self.reason = reason


@dataclass
class _Call:
    payment_id: str
    model_id: int
    refused: PolicyError | None = None
    reserved: bool = False


@dataclass(frozen=True)
class Answer:
    """A verified paid answer."""

    model_id: int
    mode: str
    outputs: list[list[float]]
    output: bytes
    input: bytes
    receipt: Receipt
    anchor: dict[str, Any] | None
    document: dict[str, Any] = field(repr=False)  # the whole JSON answer, for `receipt verify`


_CALL: ContextVar[_Call | None] = ContextVar("verinfer_agent_call", default=None)


class _PaymentIdentifier:
    """Client extension: the current call's payment identifier, when the server declares it."""

    key = PAYMENT_IDENTIFIER

    def enrich_payment_payload(
        self, payload: PaymentPayload, required: PaymentRequired
    ) -> PaymentPayload:
        call = _CALL.get()
        declared = dict(required.extensions or {})
        if call is None or PAYMENT_IDENTIFIER not in declared:
            return payload
        append_payment_identifier_to_extensions(declared, call.payment_id)
        extensions = {
            **(payload.extensions or {}),
            PAYMENT_IDENTIFIER: declared[PAYMENT_IDENTIFIER],
        }
        return payload.model_copy(update={"extensions": extensions})


class AgentClient:
    """Calls one gateway (``http://127.0.0.1:8402``) with ``wallet``'s money."""

    def __init__(
        self, gateway_url: str, wallet: Wallet, *, timeout: float = 120.0, retries: int = 2
    ) -> None:
        self.url = gateway_url.rstrip("/")
        self.wallet = wallet
        self.timeout = timeout
        self.retries = retries
        self._terms: dict[int, dict[str, Any]] = {}
        policy = wallet.policy
        self.x402 = x402Client()
        # The SDK pays only in assets it is told to; the amounts are the wallet's to check
        # (the hook below), so a refusal is a PolicyError that names the limit.
        self.x402.set_spend_controls(
            {"allowed_assets": [{"network": policy.network, "asset": policy.asset}]}
        )
        register_exact_evm_client(self.x402, EthAccountSigner(wallet.account))
        self.x402.on_before_payment_creation(self._reserve)
        self.x402.register_extension(_PaymentIdentifier())  # type: ignore[arg-type]

    # ---- free reads --------------------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        return list(read_gateway(self.url, "/v1/models", self.timeout)["models"])

    def terms(self, model_id: int) -> dict[str, Any]:
        """The model's terms (price per mode, the node that signs receipts), read once."""
        if model_id not in self._terms:
            self._terms[model_id] = model_terms(self.url, model_id, self.timeout)
        return self._terms[model_id]

    # ---- paid calls ----------------------------------------------------------------------

    def infer(self, model_id: int, input: Any, mode: str = "none") -> Answer:
        """One paid inference; the answer's receipt is verified. ``PolicyError`` before any
        signature if the wallet's policy forbids the price; ``GatewayCallError`` if the
        gateway refuses (not charged); ``ReceiptError`` if the receipt does not hold.
        From async code (a running event loop), await ``ainfer`` instead."""
        return asyncio.run(self.ainfer(model_id, input, mode))

    async def ainfer(self, model_id: int, input: Any, mode: str = "none") -> Answer:
        """``infer`` for async agents."""
        InferenceMode.parse(mode)
        terms = self.terms(model_id)
        call = _Call(generate_payment_id(), model_id)
        url = f"{self.url}/v1/models/{model_id}/infer?mode={mode}"
        response = await self._send(call, url, {"input": input})
        if response.status_code != 200:
            if call.reserved:
                self.wallet.release(call.payment_id)  # only delivered results are charged
            raise GatewayCallError(response.status_code, _reason(response))
        self.wallet.settle(call.payment_id)
        return self._verified(response.json(), terms, model_id, mode)

    async def _send(self, call: _Call, url: str, body: dict[str, Any]) -> httpx.Response:
        """POST with payment; transport failures are retried under the same payment id."""
        last: Exception | None = None
        for _ in range(self.retries + 1):
            try:
                return await self._post(call, url, body)
            except PaymentError as exc:
                if call.refused is not None:
                    raise call.refused from None
                raise GatewayCallError(0, f"payment failed: {exc}") from exc
            except httpx.TransportError as exc:
                last = exc
        raise GatewayCallError(
            0, f"no answer after {self.retries + 1} attempts: {last}",
            hint="the payment may have settled: it stays counted in today's spending",
        )  # fmt: skip

    async def _post(self, call: _Call, url: str, body: dict[str, Any]) -> httpx.Response:
        token = _CALL.set(call)
        try:
            async with x402HttpxClient(self.x402, timeout=self.timeout) as http:
                response: httpx.Response = await http.post(url, json=body)
                return response
        finally:
            _CALL.reset(token)

    def _reserve(self, context: PaymentCreationContext) -> AbortResult | None:
        """Before the SDK signs: the policy decides, and the amount is counted."""
        call = _CALL.get()
        if call is None:
            return AbortResult(reason="not_an_agent_call")
        req = context.selected_requirements
        amount = getattr(req, "amount", None) or getattr(req, "max_amount_required", "0")
        payment = Payment(
            amount=int(str(amount)),
            payee=str(req.pay_to), asset=str(req.asset), network=str(req.network),
            model_id=call.model_id,
        )  # fmt: skip
        try:
            self.wallet.reserve(call.payment_id, payment)
        except PolicyError as exc:
            call.refused = exc
            return AbortResult(reason=exc.limit, message=exc.message)
        call.reserved = True
        return None

    def _verified(
        self, document: dict[str, Any], terms: dict[str, Any], model_id: int, mode: str
    ) -> Answer:
        try:
            signed = SignedReceipt.from_json(document.get("receipt"))
            output = bytes.fromhex(str(document["output"]).removeprefix("0x"))
            input_bytes = bytes.fromhex(str(document["input"]).removeprefix("0x"))
        except (KeyError, ValueError) as exc:
            raise ReceiptError(f"the answer carries no readable receipt or bytes: {exc}") from exc
        receipt = verify_receipt(signed, node=terms["node"], input=input_bytes, output=output)
        expected_mode = int(InferenceMode.parse(mode))
        if receipt.payer.lower() != self.wallet.address.lower():
            raise ReceiptError(f"the receipt names payer {receipt.payer}, not this wallet")
        if receipt.model_id != model_id or receipt.mode != expected_mode:
            raise ReceiptError("the receipt is for another model or mode than the one called")
        if receipt.price > self.wallet.policy.max_per_call:
            raise ReceiptError(f"the receipt says {receipt.price} was paid, over the call limit")
        return Answer(
            model_id=model_id, mode=mode, outputs=document.get("outputs", []), output=output,
            input=input_bytes, receipt=receipt, anchor=document.get("anchor"), document=document,
        )  # fmt: skip

    # ---- on-chain requests --------------------------------------------------------------

    def request_onchain(
        self,
        model_id: int,
        inputs: Any,
        mode: str = "none",
        *,
        rpc_url: str | None = None,
        timeout: float = 120,
    ) -> Any:
        """An inference requested at the coordinator from the wallet's account, paid in the
        same token, under the same policy and daily ledger (payee: the coordinator).
        ``rpc_url``: else ``$VERINFER_RPC_URL``, else the running devnet."""
        from verinfer.chain.client import Chain
        from verinfer.chain.connect import resolve_rpc_url
        from verinfer.client import InferenceClient, RequestTimeoutError

        chain = Chain(resolve_rpc_url(rpc_url), self.wallet.account)
        client = InferenceClient.from_chain(chain)
        m = InferenceMode.parse(mode)
        fee = client.coordinator.quote(model_id, m, 3 if m == InferenceMode.CONSENSUS else 1)
        key = f"onchain_{uuid.uuid4().hex}"
        payment = Payment(
            amount=fee, payee=str(client.coordinator.contract.address),
            asset=client.token.address, network=f"eip155:{chain.chain_id}", model_id=model_id,
        )  # fmt: skip
        self.wallet.reserve(key, payment)
        try:
            result = client.request(model_id, inputs, m, max_fee=fee, wait=True, timeout=timeout)
        except RequestTimeoutError:
            raise  # sent and paid: it stays counted
        except VerinferError:
            self.wallet.release(key)  # reverted or never sent: no token moved
            raise
        if result.refunded is not None:
            self.wallet.release(key)
        else:
            self.wallet.settle(key)
        return result


def read_gateway(url: str, path: str, timeout: float = 30.0) -> dict[str, Any]:
    """A free read of the gateway (no payment, no wallet needed)."""
    try:
        response = httpx.get(url.rstrip("/") + path, timeout=timeout)
    except httpx.HTTPError as exc:
        raise GatewayCallError(0, f"cannot reach {url}: {exc}") from exc
    if response.status_code != 200:
        raise GatewayCallError(response.status_code, _reason(response))
    data: dict[str, Any] = response.json()
    return data


def model_terms(url: str, model_id: int, timeout: float = 30.0) -> dict[str, Any]:
    """A model's terms at the gateway: prices per mode, token, network, the receipt signer."""
    return read_gateway(url, f"/v1/models/{model_id}", timeout)


def _reason(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:300] or response.reason_phrase
    if isinstance(body, dict):
        return str(body.get("error") or body.get("detail") or body)[:500]
    return str(body)[:500]
