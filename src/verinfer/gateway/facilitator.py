"""A devnet x402 facilitator: the SDK's facilitator with the exact EVM scheme, over HTTP.

Real networks use a public facilitator; on anvil there is none, so verinfer serves the SDK's
own ``x402FacilitatorSync`` (verification and EIP-3009 settlement are entirely the SDK's) at
the three endpoints ``HTTPFacilitatorClient`` calls: ``GET /supported``, ``POST /verify`` and
``POST /settle``. The handlers are plain ``def``: the SDK's EVM signer makes blocking RPC
calls, and FastAPI runs sync handlers in its thread pool instead of on the event loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from x402 import x402FacilitatorSync
from x402.mechanisms.evm import ExactEIP3009Payload, FacilitatorWeb3Signer, hex_to_bytes
from x402.mechanisms.evm.constants import (
    AUTHORIZATION_STATE_ABI,
    ERR_NONCE_ALREADY_USED,
    ERR_TRANSACTION_FAILED,
    ERR_TRANSACTION_SIMULATION_FAILED,
)
from x402.mechanisms.evm.exact import register_exact_evm_facilitator
from x402.mechanisms.evm.types import is_permit2_payload
from x402.schemas import PaymentPayload, PaymentRequirements, SettleRequest, VerifyRequest

# Reasons the SDK gives when it could not tell why a transfer would revert.
_UNEXPLAINED = {ERR_TRANSACTION_SIMULATION_FAILED, ERR_TRANSACTION_FAILED}


@dataclass(frozen=True)
class DevnetFacilitator:
    """The SDK's facilitator for one network, and the signer that pays its gas."""

    facilitator: x402FacilitatorSync
    signer: FacilitatorWeb3Signer
    network: str

    def replayed(self, payload: PaymentPayload, requirements: PaymentRequirements) -> bool:
        """Whether the payload's EIP-3009 nonce is already spent on the token.

        The SDK explains a refused transfer by batching reads through Multicall3, which a
        bare anvil does not have, so a replay there comes back as an unexplained failure.
        One ``authorizationState`` read names it, so the payer's 402 says "replay".
        """
        if is_permit2_payload(payload.payload):
            return False
        try:
            auth = ExactEIP3009Payload.from_dict(payload.payload).authorization
            used = self.signer.read_contract(
                requirements.asset,
                AUTHORIZATION_STATE_ABI,
                "authorizationState",
                auth.from_address,
                hex_to_bytes(auth.nonce),
            )
        except Exception:  # noqa: BLE001 - a diagnosis only: keep the SDK's own reason
            return False
        return bool(used)


def devnet_facilitator(rpc_url: str, private_key: str, network: str) -> DevnetFacilitator:
    """The SDK's facilitator for ``network`` (e.g. ``eip155:31337``), paying gas with the key.

    The network list is explicit: the SDK has no entry for anvil's chain id, and a
    facilitator must only claim the chains its RPC actually serves.
    """
    signer = FacilitatorWeb3Signer(private_key=private_key, rpc_url=rpc_url)
    facilitator = x402FacilitatorSync()
    register_exact_evm_facilitator(facilitator, signer, networks=network)
    return DevnetFacilitator(facilitator, signer, network)


def create_facilitator_app(devnet: DevnetFacilitator) -> FastAPI:
    """The facilitator's HTTP API, in the SDK's wire format (camelCase JSON)."""
    app = FastAPI(title="verinfer devnet x402 facilitator")
    facilitator = devnet.facilitator

    @app.get("/supported")
    def supported() -> dict[str, Any]:
        return facilitator.get_supported().model_dump(by_alias=True, exclude_none=True)

    @app.post("/verify")
    def verify(request: VerifyRequest) -> dict[str, Any]:
        payload, requirements = request.payment_payload, request.payment_requirements
        result = facilitator.verify(payload, requirements)
        if result.invalid_reason in _UNEXPLAINED and devnet.replayed(payload, requirements):
            result = result.model_copy(update={"invalid_reason": ERR_NONCE_ALREADY_USED})
        return result.model_dump(by_alias=True, exclude_none=True)

    @app.post("/settle")
    def settle(request: SettleRequest) -> dict[str, Any]:
        payload, requirements = request.payment_payload, request.payment_requirements
        result = facilitator.settle(payload, requirements)
        if result.error_reason in _UNEXPLAINED and devnet.replayed(payload, requirements):
            result = result.model_copy(update={"error_reason": ERR_NONCE_ALREADY_USED})
        return result.model_dump(by_alias=True, exclude_none=True)

    return app
