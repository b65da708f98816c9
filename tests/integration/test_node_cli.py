"""`verinfer node ...` and `verinfer request ...` on a real anvil, through the Typer app."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from node_kit import DIGITS_SAMPLE, RunningNode, fund, node_config, node_toml, register_digits
from typer.testing import CliRunner

from verinfer.chain.accounts import ANVIL_DEV_KEYS
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.token import Token
from verinfer.cli import app

pytestmark = pytest.mark.integration
runner = CliRunner()


def verinfer(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    return result


def test_node_and_request_commands(
    chain: Chain,
    book: AddressBook,
    anvil: DevnetInfo,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("VERINFER_RPC_URL", anvil.rpc_url)
    model = register_digits(chain, book)
    config_address = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil account 1
    fund(chain, book, config_address)
    fund(chain, book, chain.address)
    config = node_config(
        anvil.rpc_url, tmp_path / "node", 1, model.model_id, start_block=chain.w3.eth.block_number
    )
    path = tmp_path / "node.toml"
    path.write_text(node_toml(config))
    monkeypatch.setenv("VERINFER_NODE_KEY_1", ANVIL_DEV_KEYS[1])

    r = verinfer("node", "register", "--config", str(path), "--json")
    assert r.exit_code == 0, r.output
    r = verinfer("node", "stake", "100", "--config", str(path), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["stake"] == 100 * 10**6
    r = verinfer("node", "serve", str(model.model_id), "--modes", "none,consensus", "--fee",
                 "0.005", "--config", str(path), "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["modes"] == ["none", "consensus"]
    r = verinfer("node", "serve", "1", "--modes", "none,fast", "--config", str(path))
    assert r.exit_code == 1 and "error:" in r.output

    node = RunningNode(config)
    try:
        x = tmp_path / "x.npy"
        np.save(x, np.load(DIGITS_SAMPLE)[:1])
        r = verinfer("request", str(model.model_id), "--input", str(x), "--wait", "--json")
        assert r.exit_code == 0, r.output
        sent = json.loads(r.stdout)
        assert sent["status"] == "fulfilled"
        expected = model.program.run(np.load(x), trace=False).outputs[0]
        assert np.array_equal(np.array(sent["outputs"][0]), expected)
        r = verinfer("request", "status", str(sent["request_id"]), "--json")
        assert r.exit_code == 0 and json.loads(r.stdout)["status"] == "fulfilled"
        r = verinfer("request", "submit", str(model.model_id), "--input", str(x),
                     "--max-fee", "0.000001")  # fmt: skip
        assert r.exit_code == 1 and "max fee" in r.output
    finally:
        node.stop()
    r = verinfer("node", "status", "--config", str(path), "--json")
    assert r.exit_code == 0, r.output
    status = json.loads(r.stdout)
    assert status["registered"] and status["jobs"]["confirmed"] == 1
    earned = status["earnings"]
    assert earned == 5_000 + 10_000 - 1_000  # node fee + price - 10% royalty
    r = verinfer("node", "status", "--config", str(path))
    assert r.exit_code == 0 and "earnings" in r.stdout and "0.014 TUSD" in r.stdout, r.output
    token = Token(chain, book.address("PaymentToken"))
    before = token.balance_of(config_address)
    r = verinfer("node", "withdraw-earnings", "--config", str(path), "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["withdrawn"] == earned
    assert token.balance_of(config_address) == before + earned
    r = verinfer("node", "status", "--config", str(path), "--json")
    assert json.loads(r.stdout)["earnings"] == 0
    r = verinfer("node", "withdraw-earnings", "--config", str(path))
    assert r.exit_code == 1 and "error:" in r.output and "Traceback" not in r.output
    r = verinfer("node", "unstake", "1", "--config", str(path), "--json")
    assert r.exit_code == 0, r.output
    r = verinfer("node", "start", "--config", str(tmp_path / "missing.toml"))
    assert r.exit_code == 1 and "does not exist" in r.output
