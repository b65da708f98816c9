"""Key sources: env key, encrypted keystore, devnet default; bad ones are clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from verinfer.chain.accounts import (
    ANVIL_DEV_KEYS,
    PRIVATE_KEY_ENV,
    dev_account,
    resolve_account,
)
from verinfer.errors import ConfigError

KEY = "0x" + "11" * 32


def test_devnet_defaults_to_anvil_account_zero() -> None:
    account = resolve_account(31337)
    assert account is not None and account.address == dev_account(0).address
    assert resolve_account(1) is None  # never a default key on a real chain


def test_env_key_wins_over_the_devnet_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRIVATE_KEY_ENV, KEY)
    account = resolve_account(1)
    assert account is not None and account.address == Account.from_key(KEY).address


def test_bad_env_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PRIVATE_KEY_ENV, "0x1234")
    with pytest.raises(ConfigError, match="not a valid private key") as err:
        resolve_account(31337)
    assert err.value.hint and "32 bytes" in err.value.hint


def test_keystore_round_trip_and_failures(tmp_path: Path) -> None:
    path = tmp_path / "key.json"
    path.write_text(json.dumps(Account.encrypt(KEY, "pw", iterations=2)))
    account = resolve_account(1, path, "pw")
    assert account is not None and account.key.hex() == KEY[2:]
    with pytest.raises(ConfigError, match="cannot decrypt"):
        resolve_account(1, path, "wrong")
    with pytest.raises(ConfigError, match="needs a password"):
        resolve_account(1, path)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_account(1, tmp_path / "missing.json", "pw")
    (tmp_path / "junk.json").write_text("not json")
    with pytest.raises(ConfigError, match="not JSON"):
        resolve_account(1, tmp_path / "junk.json", "pw")


def test_dev_keys_are_anvils_public_accounts() -> None:
    assert dev_account(1).address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    assert len(ANVIL_DEV_KEYS) == 5
