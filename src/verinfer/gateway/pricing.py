"""What one inference costs over x402: the model's on-chain price plus this node's fee.

The SDK's exact EVM scheme knows the EIP-712 domain of USDC on public chains only; for any
other token (TestUSD on anvil, or a chain it has no table for) the price must name the asset
and carry the domain's ``name``/``version`` in ``extra``, or clients cannot sign. Both are
read from the token contract itself, so they cannot drift from what it verifies.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from x402.schemas import AssetAmount

from verinfer.chain.client import Chain
from verinfer.chain.token import Token
from verinfer.models.registry import ModelRecord, RegistryClient


@dataclass(frozen=True)
class TokenDomain:
    """A payment token's address and EIP-712 domain (what an EIP-3009 signature binds to)."""

    address: str
    name: str
    version: str

    @classmethod
    def read(cls, chain: Chain, address: str) -> TokenDomain:
        token = Token(chain, address)
        version = str(chain.call(token.contract.functions.version()))
        return cls(address=token.address, name=token.name(), version=version)


class Pricing:
    """Model records and their x402 price. Records are cached for ``ttl`` seconds: the owner
    may change a price or deprecate a model, and the gateway must follow within that time
    without one registry read per call."""

    def __init__(
        self, registry: RegistryClient, token: TokenDomain, node_fee: int, *, ttl: float = 30.0
    ) -> None:
        if node_fee < 0:
            raise ValueError(f"the node fee must not be negative, got {node_fee}")
        self.registry = registry
        self.token = token
        self.node_fee = node_fee
        self.ttl = ttl
        self._records: dict[int, tuple[float, ModelRecord]] = {}
        self._lock = threading.Lock()

    def record(self, model_id: int) -> ModelRecord:
        """The registry's record; an unknown id raises UnknownModelError."""
        with self._lock:
            cached = self._records.get(model_id)
        if cached is not None and time.monotonic() - cached[0] < self.ttl:
            return cached[1]
        record = self.registry.get(model_id)
        with self._lock:
            self._records[model_id] = (time.monotonic(), record)
        return record

    def amount(self, model_id: int) -> int:
        """Token units per call: the model's registered price plus the node's fee."""
        return self.amount_of(self.record(model_id))

    def amount_of(self, record: ModelRecord) -> int:
        """``amount`` for a record already read."""
        return int(record.price) + self.node_fee

    def price(self, model_id: int) -> AssetAmount:
        return AssetAmount(
            amount=str(self.amount(model_id)),
            asset=self.token.address,
            extra={"name": self.token.name, "version": self.token.version},
        )
