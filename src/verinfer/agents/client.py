"""``AgentClient``: an agent calls verinfer's gateway and pays per call, under its wallet's policy.

Payment is the x402 SDK's client (402 challenge, signed EIP-3009 authorization, paid retry).
The wallet plugs into it at two points:

* a before-payment-creation hook reserves the amount under the policy, so the SDK never signs
  a payment the policy forbids (the call fails with the ``PolicyError`` instead);
* a client extension names each call with a payment identifier (the SDK's
  ``payment-identifier``), so a retry after a dropped connection is answered from the first
  delivery and never charged twice, even though the SDK signs a fresh authorization.

The reservation is settled when the gateway's PAYMENT-RESPONSE header says the payment
settled, and released when it says it did not, or when the gateway refused the call (the
gateway charges only delivered results); a call whose fate is unknown (no answer, or no
settlement header) stays counted. Each answer's receipt is verified before it is returned:
signed by the node the model's terms name, for this payer, this model and mode, at most the
amount reserved, over the very input and output bytes returned.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
from x402 import x402Client
from x402.client_base import PaymentPolicy, RequirementsView
from x402.extensions.payment_identifier import (
    PAYMENT_IDENTIFIER,
    append_payment_identifier_to_extensions,
    generate_payment_id,
)
from x402.http import decode_payment_response_header
from x402.http.clients import x402AsyncTransport
from x402.http.clients.httpx import PaymentError
from x402.mechanisms.evm.exact import register_exact_evm_client
from x402.mechanisms.evm.signers import EthAccountSigner
from x402.schemas import PaymentPayload, PaymentRequired
from x402.schemas.hooks import AbortResult, PaymentCreationContext

from verinfer.agents.policy import Payment, PolicyError
from verinfer.agents.wallet import Wallet
from verinfer.chain.inference import InferenceMode
from verinfer.errors import ConfigError, ContractRevertError, ModelError, VerinferError
from verinfer.gateway.receipts import Receipt, ReceiptError, SignedReceipt, verify_receipt

if TYPE_CHECKING:
    from verinfer.client import RequestResult


class GatewayCallError(VerinferError):
    """The gateway refused or failed the call; ``status`` and ``reason`` say why."""

    def __init__(self, status: int, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"the gateway answered {status}: {reason}", hint=hint)
        self.status = status
        self.reason = reason


_MODEL_PATH = re.compile(r"/v1/models/(\d+)(?:/|$)")


@dataclass
class _Call:
    payment_id: str
    model_id: int
    refused: PolicyError | None = None
    reserved: int | None = None  # the amount reserved under the policy, once it is
    sent: bool = False  # a request carrying a signed payment was handed to the transport
    identified: bool = False  # the payment carries payment_id (the server declared it)


class _Marking(httpx.AsyncBaseTransport):
    """Notes on the call when a signed payment leaves, so a failed call knows whether its
    reservation may be released."""

    def __init__(self, inner: httpx.AsyncBaseTransport, call: _Call) -> None:
        self.inner = inner
        self.call = call

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if "payment-signature" in request.headers or "x-payment" in request.headers:
            self.call.sent = True
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


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
        call.identified = True
        extensions = {
            **(payload.extensions or {}),
            PAYMENT_IDENTIFIER: declared[PAYMENT_IDENTIFIER],
        }
        return payload.model_copy(update={"extensions": extensions})


class AgentClient:
    """Calls one gateway (``http://127.0.0.1:8402``) with ``wallet``'s money."""

    def __init__(
        self,
        gateway_url: str,
        wallet: Wallet,
        *,
        timeout: float = 120.0,
        retries: int = 2,
        transport: Callable[[], httpx.AsyncBaseTransport] | None = None,
    ) -> None:
        """``retries``: how many times a call that failed in transport is sent again (same
        payment id). ``transport`` makes the HTTP transport under the payment layer, one per
        call (a proxy, or a test that records what is sent); default: httpx's."""
        self.url = gateway_url.rstrip("/")
        self.wallet = wallet
        self.timeout = timeout
        self.retries = retries
        self._transport = transport or httpx.AsyncHTTPTransport
        self._terms: dict[int, dict[str, Any]] = {}
        self.x402 = x402Client()
        # The wallet's policy is the one spend control: the SDK's own (default assets only,
        # $1 per payment) would refuse a policy's larger limits with a reason naming none of
        # them. The SDK picks among the gateway's offers the wallet's asset and network first,
        # cheapest first; the hook below then decides, naming the limit when it refuses.
        self.x402.set_spend_controls(False)
        self.x402.register_policy(_prefer(wallet.policy.asset, wallet.policy.network))
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
        terms = await asyncio.to_thread(self.terms, model_id)
        call = _Call(generate_payment_id(), model_id)
        url = f"{self.url}/v1/models/{model_id}/infer?mode={mode}"
        response = await self._send(call, url, {"input": input})
        settled = self._account(call, response)
        if response.status_code != 200:
            raise GatewayCallError(response.status_code, _reason(response))
        if not settled:
            raise GatewayCallError(
                200, "the answer does not say that the payment settled",
                hint="the call stays counted in today's spending",
            )  # fmt: skip
        return self._verified(response.json(), terms, model_id, mode, call.reserved)

    def _account(self, call: _Call, response: httpx.Response) -> bool:
        """Settle or release the call's reservation from the gateway's PAYMENT-RESPONSE;
        True if it settled. Without that header a refusal (non-2xx) was not charged, and a
        2xx stays counted: its fate is unknown."""
        if call.reserved is None:
            return False
        header = response.headers.get("PAYMENT-RESPONSE")
        try:
            settlement = decode_payment_response_header(header) if header else None
        except ValueError:
            settlement = None
        if settlement is not None and settlement.success:
            self.wallet.settle(call.payment_id)
            return True
        if settlement is not None or not 200 <= response.status_code < 300:
            self.wallet.release(call.payment_id)  # only delivered results are charged
        return False

    async def _send(self, call: _Call, url: str, body: dict[str, Any]) -> httpx.Response:
        """POST with payment; transport failures are retried under the same payment id, so
        a call the gateway delivered but we never heard is answered again, not charged."""
        last: Exception | None = None
        attempts = 0
        while attempts <= self.retries:
            attempts += 1
            try:
                return await self._post(call, url, body)
            except PaymentError as exc:
                if call.refused is not None:
                    raise call.refused from None
                # The SDK wraps a failure of the paid request itself into PaymentError.
                if not isinstance(exc.__cause__, httpx.TransportError):
                    self._unsent(call)
                    raise GatewayCallError(0, f"payment failed: {exc}") from exc
                last = exc.__cause__
            except httpx.TransportError as exc:
                last = exc
            if call.sent and not call.identified:
                break  # without a payment id, a retry after a paid request would pay again
        self._unsent(call)
        raise GatewayCallError(
            0, f"no answer after {attempts} attempts: {last}",
            hint="if a signed payment was sent, it may have settled: it stays counted today",
        )  # fmt: skip

    def _unsent(self, call: _Call) -> None:
        """A call given up on: uncount it if no signed payment ever left this process."""
        if call.reserved is not None and not call.sent:
            self.wallet.release(call.payment_id)

    async def _post(self, call: _Call, url: str, body: dict[str, Any]) -> httpx.Response:
        token = _CALL.set(call)
        try:
            paying = x402AsyncTransport(self.x402, transport=_Marking(self._transport(), call))
            async with httpx.AsyncClient(transport=paying, timeout=self.timeout) as http:
                response: httpx.Response = await http.post(url, json=body)
                return response
        finally:
            _CALL.reset(token)

    def _reserve(self, context: PaymentCreationContext) -> AbortResult | None:
        """Before the SDK signs: the policy decides, and the amount is counted. The model is
        the one the server asks payment for (its resource URL), not the one we meant to call:
        the two must agree."""
        call = _CALL.get()
        if call is None:  # the SDK client used outside infer(): nothing to account it to
            return AbortResult(reason="not_an_agent_call")
        req = context.selected_requirements
        amount = getattr(req, "amount", None) or getattr(req, "max_amount_required", "0")
        resource = getattr(context.payment_required, "resource", None)
        found = _MODEL_PATH.search(str(getattr(resource, "url", None) or ""))
        payment = Payment(
            amount=int(str(amount)),
            payee=str(req.pay_to), asset=str(req.asset), network=str(req.network),
            model_id=int(found.group(1)) if found else None,
        )  # fmt: skip
        try:
            if payment.model_id != call.model_id:
                raise PolicyError(
                    f"the gateway asks payment for model {payment.model_id}, not for model "
                    f"{call.model_id} that was called",
                    limit="model",
                )
            self.wallet.reserve(call.payment_id, payment)
        except PolicyError as exc:
            call.refused = exc
            return AbortResult(reason=exc.limit, message=exc.message)
        call.reserved = payment.amount
        return None

    def _verified(
        self,
        document: dict[str, Any],
        terms: dict[str, Any],
        model_id: int,
        mode: str,
        reserved: int | None = None,
    ) -> Answer:
        """The answer, if its receipt holds; ``reserved``: the amount the wallet authorized
        (else the per-call limit), which the receipt's price may not exceed."""
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
        allowed = self.wallet.policy.max_per_call if reserved is None else reserved
        if receipt.price > allowed:
            raise ReceiptError(
                f"the receipt says {receipt.price} was paid, over the {allowed} authorized"
            )
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
    ) -> RequestResult:
        """An inference requested at the coordinator from the wallet's account, paid in the
        same token, under the same policy and daily ledger (payee: the coordinator).
        ``rpc_url``: else ``$VERINFER_RPC_URL``, else the running devnet."""
        from verinfer.chain.client import Chain
        from verinfer.chain.connect import resolve_rpc_url
        from verinfer.client import InferenceClient

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
            sent = client.request(model_id, inputs, m, max_fee=fee)
        except (ConfigError, ModelError, ContractRevertError):
            self.wallet.release(key)  # refused or reverted: no token moved
            raise
        # From here the fee is escrowed: only a refund uncounts it; a wait that fails or
        # times out leaves it counted (the request may still be answered).
        result = client.wait(sent.request_id, timeout=timeout)
        result.tx, result.assigned, result.fee = sent.tx, sent.assigned, sent.fee
        if result.refunded is not None:
            self.wallet.release(key)
        else:
            self.wallet.settle(key)
        return result


def _prefer(asset: str, network: str) -> PaymentPolicy:
    """An SDK policy: offers in ``asset`` on ``network`` first, each group cheapest first."""

    def order(version: int, offers: list[RequirementsView]) -> list[RequirementsView]:
        def key(offer: RequirementsView) -> tuple[bool, int]:
            ours = offer.asset.lower() == asset.lower() and offer.network == network
            amount = offer.get_amount()
            return not ours, int(amount) if amount.isdigit() else 2**256

        return sorted(offers, key=key)

    return order


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
