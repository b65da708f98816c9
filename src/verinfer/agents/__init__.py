"""Agents that pay for inference: a wallet under a spending policy, and a gateway client.

``Wallet`` holds the key, the ``SpendingPolicy`` (max per call, max per UTC day, allowed
payees, models, asset, network) and a ledger that survives restarts; ``AgentClient`` calls a
verinfer gateway over x402 and verifies every receipt. See docs/agents.md.
"""

from verinfer.agents.client import AgentClient, Answer, GatewayCallError, model_terms
from verinfer.agents.ledger import SpendLedger
from verinfer.agents.policy import Payment, PolicyError, SpendingPolicy
from verinfer.agents.wallet import Wallet

__all__ = [
    "AgentClient",
    "Answer",
    "GatewayCallError",
    "Payment",
    "PolicyError",
    "SpendLedger",
    "SpendingPolicy",
    "Wallet",
    "model_terms",
]
