"""Where the signing key comes from: an env var, an encrypted keystore, or anvil's dev keys.

Keys are never taken from the command line (they would land in shell history and ``ps``).
On the devnet (chain id 31337) anvil's well-known public development keys are the default.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from eth_account import Account
from eth_account.signers.local import LocalAccount

from verinfer.errors import ConfigError

PRIVATE_KEY_ENV = "VERINFER_PRIVATE_KEY"
KEYSTORE_PASSWORD_ENV = "VERINFER_KEYSTORE_PASSWORD"
DEVNET_CHAIN_ID = 31337

# anvil's default accounts ("test test ... junk" mnemonic): public, for the devnet only.
ANVIL_DEV_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
)


def dev_account(index: int = 0) -> LocalAccount:
    """One of anvil's public development accounts."""
    account: LocalAccount = Account.from_key(ANVIL_DEV_KEYS[index])
    return account


def account_from_key(key: str) -> LocalAccount:
    try:
        account: LocalAccount = Account.from_key(key.strip())
        return account
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{PRIVATE_KEY_ENV} is not a valid private key",
            hint="it must be 32 bytes of hex, with or without 0x",
        ) from exc


def account_from_keystore(path: Path, password: str) -> LocalAccount:
    """Decrypt an Ethereum V3 keystore file (as written by geth, foundry or eth-account)."""
    try:
        encrypted = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(f"keystore {path} does not exist") from exc
    except ValueError as exc:
        raise ConfigError(f"keystore {path} is not JSON") from exc
    try:
        account: LocalAccount = Account.from_key(Account.decrypt(encrypted, password))
        return account
    except ValueError as exc:
        raise ConfigError(
            f"cannot decrypt keystore {path}: wrong password or corrupted file",
            hint=f"check {KEYSTORE_PASSWORD_ENV}",
        ) from exc


def resolve_account(
    chain_id: int, keystore: Path | None = None, password: str | None = None
) -> LocalAccount | None:
    """The signer by precedence: keystore, then env key, then (devnet only) anvil key 0."""
    if keystore is not None:
        if password is None:
            password = os.environ.get(KEYSTORE_PASSWORD_ENV)
        if password is None:
            raise ConfigError("the keystore needs a password", hint=f"set {KEYSTORE_PASSWORD_ENV}")
        return account_from_keystore(keystore, password)
    key = os.environ.get(PRIVATE_KEY_ENV)
    if key:
        return account_from_key(key)
    if chain_id == DEVNET_CHAIN_ID:
        return dev_account(0)
    return None
