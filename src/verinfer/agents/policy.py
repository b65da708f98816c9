"""An agent's spending policy: what it may pay, to whom, for which models, per call and per day.

The policy is checked before anything is signed (see wallet.py): an agent that would break it
gets a ``PolicyError`` naming the limit and the amounts, and no authorization exists that
someone could replay. Amounts are in the payment token's smallest unit (6 decimals for USDC
and TestUSD: 10_000 = 0.01).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from verinfer.errors import ConfigError, VerinferError
from verinfer.hexstr import is_address


class PolicyError(VerinferError):
    """A payment the wallet's policy forbids; nothing was signed."""

    def __init__(self, message: str, *, limit: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.limit = limit  # which rule: max_per_call, max_per_day, payee, model, asset, network


def _bad(message: str) -> ConfigError:
    return ConfigError(f"invalid spending policy: {message}")


@dataclass(frozen=True)
class Payment:
    """One payment the agent is about to authorize."""

    amount: int
    payee: str
    asset: str
    network: str  # CAIP-2, e.g. eip155:8453
    model_id: int | None  # None when the resource is not a model call


@dataclass(frozen=True)
class SpendingPolicy:
    """Limits an agent's wallet enforces before signing. ``None`` allows any payee/model."""

    max_per_call: int
    max_per_day: int
    asset: str  # the token the agent pays with (its address)
    network: str  # CAIP-2 chain the agent pays on
    allowed_payees: frozenset[str] | None = None  # lower-case addresses
    allowed_models: frozenset[int] | None = None

    def __post_init__(self) -> None:
        """A policy that cannot be what its author meant is refused now, with ``ConfigError``,
        rather than silently allowing (or refusing) every payment later."""
        for name in ("max_per_call", "max_per_day"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise _bad(f"{name} must be a positive whole number of token units, not {value!r}")
        if self.max_per_call > self.max_per_day:
            raise _bad(
                f"max_per_call ({self.max_per_call}) is over max_per_day ({self.max_per_day})"
            )
        if not is_address(self.asset):
            raise _bad(f"asset {self.asset!r} is not a 0x-prefixed 20-byte address")
        if not re.fullmatch(r"eip155:[1-9]\d*", self.network):
            raise _bad(f"network {self.network!r} is not a CAIP-2 EVM chain (eip155:ID)")
        for payee in self.allowed_payees or ():
            if not is_address(payee):
                raise _bad(f"allowed payee {payee!r} is not an address")
        if self.allowed_payees is not None and not self.allowed_payees:
            raise _bad("allowed_payees is empty: nothing could be paid (None allows any payee)")
        if self.allowed_models is not None and not self.allowed_models:
            raise _bad("allowed_models is empty: nothing could be paid (None allows any model)")
        for model in self.allowed_models or ():
            if isinstance(model, bool) or not isinstance(model, int) or model < 0:
                raise _bad(f"allowed model {model!r} is not a model id")

    @classmethod
    def of(
        cls,
        *,
        max_per_call: int,
        max_per_day: int,
        asset: str,
        network: str,
        payees: Iterable[str] | None = None,
        models: Iterable[int] | None = None,
    ) -> SpendingPolicy:
        """A policy from plain iterables (addresses in any case)."""
        return cls(
            max_per_call=max_per_call, max_per_day=max_per_day, asset=asset, network=network,
            allowed_payees=None if payees is None else frozenset(p.lower() for p in payees),
            allowed_models=None if models is None else frozenset(models),
        )  # fmt: skip

    def check(self, payment: Payment, spent_today: int) -> None:
        """Raise ``PolicyError`` if ``payment`` breaks a rule, given what today already holds
        (spent and reserved)."""
        if payment.network != self.network:
            raise PolicyError(
                f"the payment is on {payment.network}; this wallet pays on {self.network}",
                limit="network",
            )
        if payment.asset.lower() != self.asset.lower():
            raise PolicyError(
                f"the payment is in {payment.asset}; this wallet pays in {self.asset}",
                limit="asset",
            )
        if self.allowed_payees is not None and payment.payee.lower() not in self.allowed_payees:
            raise PolicyError(f"payee {payment.payee} is not allowed", limit="payee")
        if self.allowed_models is not None and payment.model_id not in self.allowed_models:
            raise PolicyError(f"model {payment.model_id} is not allowed", limit="model")
        if payment.amount > self.max_per_call:
            raise PolicyError(
                f"the call costs {payment.amount}, over the limit of {self.max_per_call} per call",
                limit="max_per_call",
            )
        if spent_today + payment.amount > self.max_per_day:
            raise PolicyError(
                f"the call costs {payment.amount} and today already holds {spent_today} of "
                f"{self.max_per_day}: {spent_today + payment.amount - self.max_per_day} over "
                "the daily limit",
                limit="max_per_day",
                hint="the limit resets at 00:00 UTC",
            )
