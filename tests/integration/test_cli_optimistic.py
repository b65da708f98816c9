"""`verinfer claim show`, `verinfer dispute start|status` and `verinfer watch`'s argument checks
on a real anvil: a node claims a corrupted result of the digits MLP and defends it; the CLI
(anvil account 0) re-executes, challenges, plays every move and wins; a correct claim is
refused as nothing to dispute."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest
from dispute_kit import corrupted_values
from node_kit import DIGITS_SAMPLE, fund, register_digits, setup_node
from typer.testing import CliRunner

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.inference import CoordinatorClient
from verinfer.cli import app
from verinfer.client import InferenceClient
from verinfer.models.registry import Mode
from verinfer.optimistic.game import ClaimerParty, DisputePlayer, output_bytes
from verinfer.runtime.commit import commit_list

pytestmark = pytest.mark.integration
runner = CliRunner()


def _defend(
    player: DisputePlayer, claim_id: int, party: ClaimerParty, stop: threading.Event
) -> None:
    """The dishonest node answers every move with its corrupted trace, until stopped."""
    while not stop.is_set():
        if player.move(claim_id, claimer=party) is None:
            stop.wait(0.05)


def test_dispute_start_wins_against_a_wrong_claim(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERINFER_RPC_URL", anvil.rpc_url)
    model = register_digits(chain, book, optimistic=True)
    setup_node(anvil.rpc_url, book, 1, model.model_id, modes=Mode.NONE | Mode.OPTIMISTIC)
    node_chain = Chain(anvil.rpc_url, dev_account(1))
    fund(chain, book, chain.address)
    client = InferenceClient.from_chain(chain)
    node = CoordinatorClient(node_chain, client.coordinator.address)
    program = model.program
    x = np.load(DIGITS_SAMPLE)[:1]
    execution = program.run(x)
    values = corrupted_values(program, execution, 1, 3, 9, propagate=True)
    party = ClaimerParty(program, values)
    wrong = output_bytes(program, values)

    rid = client.request(model.model_id, x, "optimistic").request_id
    claim_id, _ = node.claim(rid, wrong, commit_list(party.leaves))

    shown = runner.invoke(app, ["claim", "show", str(rid), "--json"])
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert info["claim_id"] == claim_id and info["status"] == "Open"
    assert info["claimer"] == dev_account(1).address and "dispute" not in info
    assert info["trace_root"] == "0x" + commit_list(party.leaves).hex()

    stop = threading.Event()
    defender = threading.Thread(
        target=_defend,
        args=(DisputePlayer(node_chain, client.coordinator.dispute_game()), claim_id, party, stop),
        daemon=True,
    )
    defender.start()
    try:
        started = time.monotonic()
        result = runner.invoke(app, ["dispute", "start", str(rid), "--json", "--timeout", "60"])
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        defender.join(timeout=10)
    assert result.exit_code == 0, result.output
    won = json.loads(result.stdout)
    assert won["status"] == "ChallengerWon"
    assert won["dispute"]["winner"] == dev_account(0).address
    assert won["dispute"]["claimer_won"] is False and won["dispute"]["reason"] == "one step"
    assert elapsed < 30  # a full MLP dispute, both parties polling

    status = runner.invoke(app, ["dispute", "status", str(rid), "--json"])
    assert status.exit_code == 0 and json.loads(status.stdout)["dispute"] == won["dispute"]


def test_correct_claims_and_bad_arguments_are_refused(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("VERINFER_RPC_URL", anvil.rpc_url)
    model = register_digits(chain, book, optimistic=True)
    setup_node(anvil.rpc_url, book, 1, model.model_id, modes=Mode.NONE | Mode.OPTIMISTIC)
    fund(chain, book, chain.address)
    client = InferenceClient.from_chain(chain)
    node = CoordinatorClient(Chain(anvil.rpc_url, dev_account(1)), client.coordinator.address)
    x = np.load(DIGITS_SAMPLE)[:1]
    execution = model.program.run(x)
    sent = client.request(model.model_id, x, "optimistic")
    unclaimed = runner.invoke(app, ["claim", "show", str(sent.request_id)])
    assert unclaimed.exit_code == 1 and "has no optimistic claim" in unclaimed.output
    node.claim(
        sent.request_id, output_bytes(model.program, execution.values),
        bytes.fromhex(execution.trace_root[2:]),
    )  # fmt: skip
    refused = runner.invoke(app, ["dispute", "start", str(sent.request_id)])
    assert refused.exit_code == 1 and "nothing to dispute" in refused.output
    none = runner.invoke(app, ["dispute", "status", str(sent.request_id), "--json"])
    assert none.exit_code == 0 and "dispute" not in json.loads(none.stdout)
    for models in ("abc", "0", ""):
        bad = runner.invoke(app, ["watch", "--models", models])
        assert bad.exit_code == 1 and "--models" in bad.output
    bad = runner.invoke(app, ["watch", "--models", "1", "--max-at-risk", "lots"])
    assert bad.exit_code == 1 and "--max-at-risk" in bad.output
