"""What one inference costs over x402: the model's on-chain price plus this node's fee.

In mode none the gateway computes the answer itself: the model's registered price plus the
node's fee. In a relayed mode (zk, optimistic, consensus: see relay.py) the gateway pays the
coordinator's quote for an on-chain request, so the price is that quote plus the node's fee.

The SDK's exact EVM scheme knows the EIP-712 domain of USDC on public chains only; for any
other token (TestUSD on anvil, or a chain it has no table for) the price must name the asset
and carry the domain's ``name``/``version`` in ``extra``, or clients cannot sign. Both are
read from the token contract itself, so they cannot drift from what it verifies.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from x402.schemas import AssetAmount

from verinfer.chain.client import Chain
from verinfer.chain.inference import InferenceMode
from verinfer.chain.token import Token
from verinfer.errors import VerinferError
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
        self,
        registry: RegistryClient,
        token: TokenDomain,
        node_fee: int,
        *,
        ttl: float = 30.0,
        quote: Callable[[int, InferenceMode], int] | None = None,
    ) -> None:
        if node_fee < 0:
            raise ValueError(f"the node fee must not be negative, got {node_fee}")
        self.registry = registry
        self.token = token
        self.node_fee = node_fee
        self.quote = quote  # the coordinator's price of a relayed request; None: mode none only
        self.ttl = ttl
        self._records: dict[int, tuple[float, ModelRecord]] = {}
        self._quotes: dict[tuple[int, InferenceMode], tuple[float, int]] = {}
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

    def offer(self, record: ModelRecord) -> dict[InferenceMode, int]:
        """Mode -> token units per call, for every mode sold for ``record`` now: those its
        owner allows, mode none computed here, the others only when relayed and some staked
        node serves them (the coordinator quotes them)."""
        sold = [InferenceMode.NONE] if self.quote is None else list(InferenceMode)
        offer: dict[InferenceMode, int] = {}
        for mode in sold:
            if mode.name.lower() not in record.modes:
                continue
            try:
                offer[mode] = self.amount_of(record, mode)
            except VerinferError:  # the coordinator has no node for it
                continue
        return offer

    def amount(self, model_id: int, mode: InferenceMode = InferenceMode.NONE) -> int:
        """Token units per call in ``mode``."""
        return self.amount_of(self.record(model_id), mode)

    def amount_of(self, record: ModelRecord, mode: InferenceMode = InferenceMode.NONE) -> int:
        """``amount`` for a record already read (a relayed mode's quote is cached ``ttl``)."""
        if mode == InferenceMode.NONE:
            return int(record.price) + self.node_fee
        if self.quote is None:
            raise ValueError(f"this gateway does not relay mode {mode.name.lower()}")
        key = (record.model_id, mode)
        with self._lock:
            cached = self._quotes.get(key)
        if cached is None or time.monotonic() - cached[0] >= self.ttl:
            cached = (time.monotonic(), self.quote(record.model_id, mode))
            with self._lock:
                self._quotes[key] = cached
        return cached[1] + self.node_fee

    def price(
        self, model_id: int, mode: InferenceMode = InferenceMode.NONE, count: int = 1
    ) -> AssetAmount:
        """The x402 price of ``count`` runs (an embeddings request of ``count`` texts)."""
        return AssetAmount(
            amount=str(self.amount(model_id, mode) * count),
            asset=self.token.address,
            extra={"name": self.token.name, "version": self.token.version},
        )
