"""Mode optimistic through the node on a real anvil: the node computes the digits MLP with
its trace, claims (output, trace root) with the game's bond, waits out the challenge window
and calls finalizeOptimistic; the consumer receives the output and the node is paid."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from dispute_kit import RandomChallenger
from node_kit import DIGITS_SAMPLE, RunningNode, fund, node_config, register_digits, setup_node
from test_node_e2e import wait_jobs

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deploy import SuiteParams
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.inference import RequestStatus
from verinfer.client import InferenceClient
from verinfer.models.registry import Mode
from verinfer.node.config import NodeConfig
from verinfer.node.executor import encode_outputs
from verinfer.node.jobs import Job, JobLog, JobState
from verinfer.optimistic.game import DisputePlayer, DisputeRecord

pytestmark = pytest.mark.integration

WINDOW = SuiteParams().challenge_window_s


def wait_state(data_dir: Path, request_id: int, state: JobState, timeout: float = 30.0) -> Job:
    deadline = time.monotonic() + timeout
    job = None
    while time.monotonic() < deadline:
        log = JobLog.in_dir(data_dir)
        job = log.get(str(request_id))
        log.close()
        if job is not None and job.state == state:
            return job
        time.sleep(0.1)
    raise AssertionError(f"request {request_id} not {state}: {job}")


def advance(chain: Chain, seconds: int) -> None:
    chain.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def setup(chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path) -> tuple[
    int, str, NodeConfig, InferenceClient
]:  # fmt: skip
    model = register_digits(chain, book, optimistic=True)
    node = setup_node(anvil.rpc_url, book, 1, model.model_id, modes=Mode.NONE | Mode.OPTIMISTIC)
    fund(chain, book, chain.address)
    config = node_config(
        anvil.rpc_url, tmp_path / "n1", 1, model.model_id, modes=("none", "optimistic"),
        start_block=chain.w3.eth.block_number,
    )  # fmt: skip
    return model.model_id, node, config, InferenceClient.from_chain(chain)


def claims(client: InferenceClient, name: str, request_id: int) -> int:
    event = getattr(client.coordinator.contract.events, name)
    return len(event().get_logs(from_block=0, argument_filters={"requestId": request_id}))


def test_node_claims_then_finalizes(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    model_id, node_address, config, client = setup(chain, book, anvil, tmp_path)
    program = client.program(model_id)
    x = np.load(DIGITS_SAMPLE)[:1]
    expected = program.run(x)
    node = RunningNode(config)
    try:
        sent = client.request(model_id, x, "optimistic")
        assert sent.assigned == [node_address]
        job = wait_state(config.data_dir, sent.request_id, JobState.CLAIMED)
        assert job.trace_root is not None and "0x" + job.trace_root.hex() == expected.trace_root
        coordinator = client.coordinator
        assert coordinator.get_request(sent.request_id).status == RequestStatus.CLAIMED
        game = chain.contract("DisputeGame", coordinator.dispute_game())
        claim = chain.call(game.functions.claims(coordinator.claim_of(sent.request_id)))
        assert claim[0] == node_address and "0x" + bytes(claim[6]).hex() == expected.trace_root
        assert job.reveal_deadline == int(claim[1]) + WINDOW
        time.sleep(0.5)  # inside the window the node waits
        assert coordinator.get_request(sent.request_id).status == RequestStatus.CLAIMED
        advance(chain, WINDOW + 1)
        result = client.wait(sent.request_id, timeout=30)
        assert result.status == "fulfilled" and result.outputs_q is not None
        assert np.array_equal(result.outputs_q[0], expected.outputs_q[0])
        assert wait_jobs(config.data_dir, 1) == ["finalized"]
    finally:
        node.stop()
    assert coordinator.balance_of(node_address) > 0
    log = JobLog.in_dir(config.data_dir)
    assert log.counters()["tx_sent"] == 2 and log.counters()["requests_handled"] == 1
    log.close()


def test_restart_after_claim_finalizes_once(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    model_id, node_address, config, client = setup(chain, book, anvil, tmp_path)
    x = np.load(DIGITS_SAMPLE)[1:2]
    node = RunningNode(config)
    try:
        sent = client.request(model_id, x, "optimistic")
        wait_state(config.data_dir, sent.request_id, JobState.CLAIMED)
    finally:
        node.stop()
    advance(chain, WINDOW + 1)
    node = RunningNode(config)
    try:
        assert client.wait(sent.request_id, timeout=30).status == "fulfilled"
        assert wait_jobs(config.data_dir, 1) == ["finalized"]
        time.sleep(0.5)  # no second finalize (nor claim) follows
    finally:
        node.stop()
    assert claims(client, "Claimed", sent.request_id) == 1
    assert claims(client, "InferenceFulfilled", sent.request_id) == 1
    log = JobLog.in_dir(config.data_dir)
    assert log.counters()["tx_sent"] == 2
    log.close()
    assert client.coordinator.balance_of(node_address) > 0


def test_node_defends_its_claim_against_a_dishonest_challenger(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    """The node's watchtower answers every move of a challenger who disputes random steps,
    children and elements of a correct claim; the challenger loses its bond, the node is paid."""
    model_id, node_address, config, client = setup(chain, book, anvil, tmp_path)
    program = client.program(model_id)
    x = np.load(DIGITS_SAMPLE)[2:3]
    expected = program.run(x)
    attacker = Chain(anvil.rpc_url, dev_account(3))
    game_address = client.coordinator.dispute_game()
    player = DisputePlayer(attacker, game_address)
    node = RunningNode(config)
    try:
        sent = client.request(model_id, x, "optimistic")
        wait_state(config.data_dir, sent.request_id, JobState.CLAIMED)
        claim_id = client.coordinator.claim_of(sent.request_id)
        bond = int(player.game.functions.challengeBond().call())
        credit_before = chain.w3.eth.get_balance(node_address)
        attacker.transact(player.game.functions.challenge(claim_id), value=bond)
        challenger = RandomChallenger(program, expected, seed=3)
        output = encode_outputs(program, expected.outputs_q)
        deadline = time.monotonic() + 60
        while player.dispute(claim_id)[0] != "Done":
            assert time.monotonic() < deadline, player.dispute(claim_id)
            if player.move(claim_id, challenger=challenger, claimed_output=output) is None:
                time.sleep(0.05)
        record = DisputeRecord()
        player.outcome(claim_id, record)
        assert record.claimer_won is True
        advance(chain, WINDOW + 1)
        result = client.wait(sent.request_id, timeout=30)
        assert result.status == "fulfilled"
        assert np.array_equal(result.outputs_q[0], expected.outputs_q[0])  # type: ignore[index]
        assert wait_jobs(config.data_dir, 1) == ["finalized"]
    finally:
        node.stop()
    # The node withdrew what the game credited it: the challenger's bond minus the fee (and,
    # once finalized, its own claim bond), more than the gas of its moves.
    assert chain.w3.eth.get_balance(node_address) > credit_before
    assert int(player.game.functions.credits(node_address).call()) == 0
