"""`verinfer token balance|faucet` on the devnet, and the faucet refused beyond its cap."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.cli import app

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_faucet_then_balance(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERINFER_RPC_URL", anvil.rpc_url)
    me = dev_account(0).address
    before = json.loads(runner.invoke(app, ["token", "balance", "--json"]).stdout)["balance"]
    minted = runner.invoke(app, ["token", "faucet", "12.5", "--json"])
    assert minted.exit_code == 0, minted.output
    assert json.loads(minted.stdout)["minted"] == 12_500_000
    after = json.loads(runner.invoke(app, ["token", "balance", me, "--json"]).stdout)
    assert after == {"address": me, "balance": before + 12_500_000, "display": after["display"]}
    too_much = runner.invoke(app, ["token", "faucet", "2000000"])
    assert too_much.exit_code == 1 and "VerinferFaucetCapExceeded" in too_much.output
    garbage = runner.invoke(app, ["token", "faucet", "ten"])
    assert garbage.exit_code == 1 and "hint" in garbage.output
