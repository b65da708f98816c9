"""Pay-per-call HTTP for verinfer models, with x402 (issue #7).

The protocol itself (402 challenges, EIP-3009 authorizations, verification and settlement)
is the official ``x402`` SDK's; this package only wires it to verinfer: prices read from the
model registry, inference by the deterministic runtime, and a devnet facilitator that settles
in TestUSD on anvil.
"""

from verinfer.gateway.app import GatewayConfig, create_gateway_app, gateway_from_chain
from verinfer.gateway.facilitator import (
    DevnetFacilitator,
    create_facilitator_app,
    devnet_facilitator,
)
from verinfer.gateway.serve import ServerThread

__all__ = [
    "DevnetFacilitator",
    "GatewayConfig",
    "ServerThread",
    "create_facilitator_app",
    "create_gateway_app",
    "devnet_facilitator",
    "gateway_from_chain",
]
