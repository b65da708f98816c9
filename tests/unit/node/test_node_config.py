"""Node config: a valid file loads; every bad field is a ConfigError that names it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from verinfer.chain.accounts import ANVIL_DEV_KEYS
from verinfer.errors import ConfigError
from verinfer.node.config import load_config, parse_config

GOOD = """
rpc_url = "http://127.0.0.1:8545"
data_dir = "state"
confirmations = 2
poll_interval = 0.25

[key]
env = "NODE_KEY"

[[models]]
id = 1
modes = ["none", "consensus"]
fee = "0.01"

[metrics]
port = 0

[gas]
margin = 1.5
"""


def base() -> dict[str, Any]:
    return {
        "rpc_url": "http://127.0.0.1:8545",
        "data_dir": "/tmp/x",
        "key": {"env": "NODE_KEY"},
        "models": [{"id": 1, "modes": ["none"], "fee": "0.01"}],
    }


def test_good_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(GOOD)
    config = load_config(path)
    assert config.confirmations == 2
    assert config.data_dir == tmp_path / "state"  # relative to the config file
    assert config.models[0].mode_mask == 3
    assert config.metrics.port == 0
    assert config.gas.margin == 1.5
    assert config.served(1) is not None and config.served(2) is None


def test_optimistic_mode_is_accepted() -> None:
    data = base()
    data["models"] = [{"id": 1, "modes": ["none", "optimistic"]}]
    assert parse_config(data).models[0].mode_mask == 5


def test_defaults() -> None:
    config = parse_config(base())
    assert config.confirmations == 1
    assert config.metrics.enabled and config.metrics.port == 9464
    assert config.gas.margin == 1.25


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"rpc_url": "ftp://x"}, "rpc_url"),
        ({"rpc_url": 5}, "rpc_url"),
        ({"confirmations": 0}, "confirmations"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": "fast"}, "poll_interval"),
        ({"max_block_range": 0}, "max_block_range"),
        ({"start_block": -1}, "start_block"),
        ({"coordinator": "0x1234"}, "coordinator"),
        ({"models": []}, "models"),
        ({"models": [{"id": 0, "modes": ["none"]}]}, "models[0].id"),
        ({"models": [{"id": 1, "modes": []}]}, "models[0].modes"),
        ({"models": [{"id": 1, "modes": ["fast"]}]}, "models[0].modes[0]"),
        ({"models": [{"id": 1, "modes": ["none", "none"]}]}, "models[0].modes"),
        ({"models": [{"id": 1, "modes": ["none"], "fee": "-1"}]}, "models[0].fee"),
        ({"models": [{"id": 1, "modes": ["none"], "fee": "1e3"}]}, "models[0].fee"),
        ({"models": [{"id": 1, "modes": ["none"]}, {"id": 1, "modes": ["none"]}]}, "models"),
        ({"key": {}}, "key"),
        ({"key": {"env": "A", "keystore": "/k.json"}}, "key"),
        ({"key": {"env": "0xabc def"}}, "key.env"),
        ({"metrics": {"port": 70000}}, "metrics.port"),
        ({"metrics": {"host": "0.0.0.0"}}, "metrics.host"),
        ({"gas": {"margin": 0.5}}, "gas.margin"),
        ({"gas": {"priority_fee_gwei": 5, "max_fee_gwei": 1}}, "gas"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_field_is_named(change: dict[str, Any], field: str) -> None:
    data = base() | change
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    assert f": {field}: " in info.value.message, info.value.message


@pytest.mark.parametrize("where", ["top", "key", "inline"])
def test_secrets_are_refused(where: str) -> None:
    data = base()
    if where == "top":
        data["private_key"] = ANVIL_DEV_KEYS[1]
    elif where == "key":
        data["key"] = {"env": "X", "private_key": ANVIL_DEV_KEYS[1]}
    else:
        data["key"] = ANVIL_DEV_KEYS[1]
    with pytest.raises(ConfigError, match="secrets never go in the config file"):
        parse_config(data)


def test_missing_required_field() -> None:
    data = base()
    del data["data_dir"]
    with pytest.raises(ConfigError, match="data_dir: Field required"):
        parse_config(data)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("rpc_url = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_key_loading(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config(base())
    monkeypatch.delenv("NODE_KEY", raising=False)
    with pytest.raises(ConfigError, match="key.env: the environment variable NODE_KEY"):
        config.key.load()
    monkeypatch.setenv("NODE_KEY", ANVIL_DEV_KEYS[1])
    assert config.key.load().address == "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"
    monkeypatch.setenv("NODE_KEY", "nonsense")
    with pytest.raises(ConfigError, match="not a valid private key"):
        config.key.load()


def test_keystore(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from eth_account import Account

    path = tmp_path / "key.json"
    path.write_text(json.dumps(Account.encrypt(ANVIL_DEV_KEYS[2], "pw", iterations=2)))
    config = parse_config(base() | {"key": {"keystore": str(path), "password_env": "PW"}})
    monkeypatch.delenv("PW", raising=False)
    with pytest.raises(ConfigError, match="key.password_env"):
        config.key.load()
    monkeypatch.setenv("PW", "pw")
    assert config.key.load().address == Account.from_key(ANVIL_DEV_KEYS[2]).address
    monkeypatch.setenv("PW", "wrong")
    with pytest.raises(ConfigError, match="wrong password"):
        config.key.load()


def test_take_over_orphans_defaults_on() -> None:
    from verinfer.node.config import parse_config

    base = {
        "rpc_url": "http://127.0.0.1:8545", "data_dir": "d", "key": {"env": "K"},
        "models": [{"id": 1, "modes": ["none"]}],
    }  # fmt: skip
    assert parse_config(base).take_over_orphans
    assert not parse_config({**base, "take_over_orphans": False}).take_over_orphans
