"""A devnet x402 facilitator: the SDK's facilitator with the exact EVM scheme, over HTTP.

Real networks use a public facilitator; on anvil there is none, so verinfer serves the SDK's
own ``x402FacilitatorSync`` (verification and EIP-3009 settlement are entirely the SDK's) at
the three endpoints ``HTTPFacilitatorClient`` calls: ``GET /supported``, ``POST /verify`` and
``POST /settle``. The handlers are plain ``def``: the SDK's EVM signer makes blocking RPC
calls, and FastAPI runs sync handlers in its thread pool instead of on the event loop.

The SDK explains a refused transfer (spent nonce, balance) by batching reads through
Multicall3, which verinfer installs on the devnet (chain/deploy.py), so its reasons hold
there as on public chains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from x402 import x402FacilitatorSync
from x402.mechanisms.evm import FacilitatorWeb3Signer
from x402.mechanisms.evm.exact import register_exact_evm_facilitator
from x402.schemas import SettleRequest, VerifyRequest


@dataclass(frozen=True)
class DevnetFacilitator:
    """The SDK's facilitator for one network, and the signer that pays its gas."""

    facilitator: x402FacilitatorSync
    signer: FacilitatorWeb3Signer
    network: str


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
        result = facilitator.verify(request.payment_payload, request.payment_requirements)
        return result.model_dump(by_alias=True, exclude_none=True)

    @app.post("/settle")
    def settle(request: SettleRequest) -> dict[str, Any]:
        result = facilitator.settle(request.payment_payload, request.payment_requirements)
        return result.model_dump(by_alias=True, exclude_none=True)

    return app
