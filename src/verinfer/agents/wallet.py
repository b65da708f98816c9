"""An agent's wallet: its key, its spending policy and the ledger that enforces it.

The key never leaves the wallet except into the x402 SDK's signer (EIP-3009 authorizations)
and verinfer's chain client (on-chain requests); both sign only after ``reserve`` accepted
the payment under the policy.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from verinfer.agents.ledger import SpendLedger
from verinfer.agents.policy import Payment, SpendingPolicy
from verinfer.errors import ConfigError
from verinfer.home import home_dir

KEY_ENV = "VERINFER_AGENT_KEY"
KEYSTORE_ENV = "VERINFER_AGENT_KEYSTORE"
PASSWORD_ENV = "VERINFER_AGENT_KEYSTORE_PASSWORD"


class Wallet:
    """A key under a spending policy; ``ledger`` defaults to ``$VERINFER_HOME/agents/ADDR.json``."""

    def __init__(
        self, account: LocalAccount, policy: SpendingPolicy, ledger: SpendLedger | None = None
    ) -> None:
        self.account = account
        self.policy = policy
        path = home_dir() / "agents" / f"{account.address.lower()}.json"
        self.ledger = ledger or SpendLedger(path)

    @property
    def address(self) -> str:
        return str(self.account.address)

    @classmethod
    def from_key(
        cls, key: str, policy: SpendingPolicy, ledger: SpendLedger | None = None
    ) -> Wallet:
        try:
            account = Account.from_key(key)
        except (ValueError, TypeError) as exc:
            raise ConfigError("the agent key is not a 32-byte hex private key") from exc
        return cls(account, policy, ledger)

    @classmethod
    def from_keystore(
        cls, path: Path, password: str, policy: SpendingPolicy, ledger: SpendLedger | None = None
    ) -> Wallet:
        """A wallet from an encrypted V3 keystore (as ``geth``/``cast wallet`` write them)."""
        try:
            key = Account.decrypt(json.loads(path.read_text()), password)
        except OSError as exc:
            raise ConfigError(f"cannot read the keystore {path}: {exc.strerror}") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"cannot decrypt the keystore {path}: {exc!r}",
                hint="check the password, and that the file is a V3 keystore",
            ) from exc
        return cls(Account.from_key(key), policy, ledger)

    @classmethod
    def from_env(cls, policy: SpendingPolicy, ledger: SpendLedger | None = None) -> Wallet:
        """``$VERINFER_AGENT_KEY``, else ``$VERINFER_AGENT_KEYSTORE`` with
        ``$VERINFER_AGENT_KEYSTORE_PASSWORD``."""
        key = os.environ.get(KEY_ENV)
        if key:
            return cls.from_key(key, policy, ledger)
        keystore = os.environ.get(KEYSTORE_ENV)
        if keystore:
            return cls.from_keystore(
                Path(keystore), os.environ.get(PASSWORD_ENV, ""), policy, ledger
            )
        raise ConfigError(
            "no agent key", hint=f"set {KEY_ENV}, or {KEYSTORE_ENV} and {PASSWORD_ENV}"
        )

    def reserve(self, key: str, payment: Payment) -> None:
        """Count ``payment`` under ``key`` if the policy allows it; else ``PolicyError``."""
        self.ledger.reserve(key, payment, self.policy)

    def settle(self, key: str) -> None:
        self.ledger.settle(key)

    def release(self, key: str) -> None:
        self.ledger.release(key)

    def spent_today(self) -> int:
        return self.ledger.spent_today()

    def left_today(self) -> int:
        return max(0, self.policy.max_per_day - self.spent_today())
