"""The daemon closes what other parties leave open, on a real anvil: orphaned mode-none
requests (a dead assignee), consensus ballots a node never revealed in, inputs no node can
run. Time moves with ``evm_increaseTime``; the node reads it from the latest block.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from node_kit import (
    DIGITS_SAMPLE,
    NODE_FEE,
    PRICE,
    RunningNode,
    fund,
    node_config,
    register_digits,
    setup_node,
)

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.codec import encode_tensors
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.inference import CoordinatorClient, NodeRegistryClient, RequestStatus
from verinfer.client import InferenceClient
from verinfer.node.executor import encode_outputs
from verinfer.node.jobs import Job, JobLog, JobState
from verinfer.node.watcher import Watcher

pytestmark = pytest.mark.integration


def wait_for(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def jobs_of(data_dir: Path) -> dict[int, Job]:
    log = JobLog.in_dir(data_dir)
    try:
        return {int(j.request_id): j for j in log.all()}
    finally:
        log.close()


def warp_to(chain: Chain, timestamp: int) -> None:
    """Mine a block at ``timestamp`` (the node's clock is the latest block's timestamp)."""
    chain.w3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])
    chain.w3.provider.make_request("evm_mine", [])
    assert int(chain.w3.eth.get_block("latest")["timestamp"]) == timestamp


def test_orphaned_request_taken_over_after_window(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    model = register_digits(chain, book)
    nodes = {i: setup_node(anvil.rpc_url, book, i, model.model_id) for i in (1, 2)}
    fund(chain, book, chain.address)
    client = InferenceClient.from_chain(chain)
    client.token.approve(client.coordinator.address, 10**12)
    coordinator = client.coordinator
    x = np.load(DIGITS_SAMPLE)[:1]
    expected = client.encode_inputs(model.model_id, x)
    output = model.program.run(x, trace=False)
    start = chain.w3.eth.block_number
    orphan = client.request(model.model_id, x, "none")
    dead = next(i for i, a in nodes.items() if a == orphan.assigned[0])
    taker = 3 - dead
    # A second request for the (not running) assignee, which answers it itself in time;
    # requests assigned to the taker meanwhile are its own work.
    by_dead = client.request(model.model_id, x, "none")
    for _ in range(30):
        if by_dead.assigned[0] == nodes[dead]:
            break
        by_dead = client.request(model.model_id, x, "none")
    assert by_dead.assigned[0] == nodes[dead]
    config = node_config(anvil.rpc_url, tmp_path / "t", taker, model.model_id, start_block=start)
    stake_before = NodeRegistryClient(chain, book.address("NodeRegistry")).get_node(nodes[dead])
    node = RunningNode(config)
    try:
        jobs = wait_for(
            "standby rows",
            lambda: (
                (j := jobs_of(config.data_dir)).get(orphan.request_id)
                and j.get(by_dead.request_id)
                and j
            ),
        )
        assert jobs[orphan.request_id].state == JobState.STANDBY
        assert jobs[orphan.request_id].takeover
        # The assignee answers its own request inside its window: the standby row goes away.
        assignee = CoordinatorClient(
            Chain(anvil.rpc_url, dev_account(dead)), book.address("InferenceCoordinator")
        )
        assignee.fulfil(by_dead.request_id, encode_outputs(model.program, output.outputs_q))
        wait_for(
            "the answered request's standby row to go",
            lambda: by_dead.request_id not in jobs_of(config.data_dir),
        )
        # Up to the last second of the window the taker waits ...
        info = coordinator.get_request(orphan.request_id)
        warp_to(chain, info.assigned_until - 1)
        time.sleep(0.6)  # a dozen ticks
        assert coordinator.get_request(orphan.request_id).status == RequestStatus.PENDING
        assert jobs_of(config.data_dir)[orphan.request_id].state == JobState.STANDBY
        # ... and takes the request over once it has passed.
        warp_to(chain, info.assigned_until + 1)
        result = client.wait(orphan.request_id, timeout=20)
        assert result.status == "fulfilled" and result.outputs_q is not None
        assert np.array_equal(result.outputs_q[0], output.outputs_q[0])
        job = wait_for(
            "the taken-over job to be confirmed",
            lambda: (j := jobs_of(config.data_dir)[orphan.request_id]).state.terminal and j,
        )
        assert job.outcome == "took_over" and job.input == expected
    finally:
        node.stop()
    event = coordinator.settlement(orphan.request_id, from_block=start)
    assert event is not None
    fulfil_tx = chain.w3.eth.get_transaction(
        coordinator.contract.events.InferenceFulfilled().get_logs(
            from_block=start, argument_filters={"requestId": orphan.request_id}
        )[0]["transactionHash"]
    )
    assert fulfil_tx["from"] == nodes[taker]
    # The taker is paid in full; the no-show is slashed.
    assert coordinator.balance_of(nodes[taker]) >= NODE_FEE + PRICE - PRICE // 10
    stake_after = NodeRegistryClient(chain, book.address("NodeRegistry")).get_node(nodes[dead])
    assert stake_after.stake < stake_before.stake

    # take_over_orphans = false: only assigned requests become jobs.
    off = config.model_copy(update={"take_over_orphans": False})
    watcher = Watcher(
        chain.w3, coordinator.contract, JobLog.in_dir(tmp_path / "off"), off,
        nodes[taker], start_block=start,
    )  # fmt: skip
    logs = chain.w3.eth.get_logs(
        {"address": coordinator.address, "fromBlock": start, "toBlock": "latest"}
    )
    new_jobs, _, _ = watcher.interpret(logs)
    assert orphan.request_id not in {int(j.request_id) for j in new_jobs}
    assert all(not j.standby for j in new_jobs)


def test_open_ballot_finalized_after_reveal_deadline(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    model = register_digits(chain, book)
    nodes = {i: setup_node(anvil.rpc_url, book, i, model.model_id) for i in (1, 2, 3)}
    fund(chain, book, chain.address)
    start = chain.w3.eth.block_number
    configs = {
        i: node_config(anvil.rpc_url, tmp_path / f"n{i}", i, model.model_id, start_block=start)
        for i in nodes
    }
    client = InferenceClient.from_chain(chain)
    coordinator = client.coordinator
    registry = NodeRegistryClient(chain, book.address("NodeRegistry"))
    x = np.load(DIGITS_SAMPLE)[2:3]
    # Node 3 commits, then dies before it can reveal.
    silent = RunningNode(configs[3])
    try:
        sent = client.request(model.model_id, x, "consensus", redundancy=3)
        wait_for(
            "node 3's commit",
            lambda: (
                (j := jobs_of(configs[3].data_dir).get(sent.request_id))
                and j.state == JobState.COMMITTED
            ),
        )
    finally:
        silent.stop()
    stake_before = registry.get_node(nodes[3]).stake
    running = [RunningNode(configs[i]) for i in (1, 2)]
    try:
        result = client.wait(sent.request_id, timeout=30)  # 2 of 3 agree: delivered
        assert result.status == "fulfilled"
        for i in (1, 2):
            wait_for(
                f"node {i} to reveal",
                lambda i=i: (
                    jobs_of(configs[i].data_dir)[sent.request_id].state == JobState.REVEALED
                ),
            )
        time.sleep(0.3)
        assert not coordinator.get_ballot(sent.request_id).closed  # node 3 may still reveal
        info = coordinator.get_request(sent.request_id)
        warp_to(chain, info.reveal_deadline + 1)
        wait_for("the ballot to close", lambda: coordinator.get_ballot(sent.request_id).closed)
        outcomes = sorted(
            str(
                wait_for(
                    f"node {i}'s job to end",
                    lambda i=i: (
                        (j := jobs_of(configs[i].data_dir)[sent.request_id]).state
                        == JobState.CONFIRMED
                        and j
                    ),
                ).outcome
            )
            for i in (1, 2)
        )
    finally:
        for node in running:
            node.stop()
    # One of the two finalized; the other found the ballot closed (a revert, if any, is data).
    assert outcomes == ["revealed", "revealed_finalized"], outcomes
    closed = coordinator.contract.events.ConsensusClosed().get_logs(
        from_block=start, argument_filters={"requestId": sent.request_id}
    )
    assert len(closed) == 1 and closed[0]["args"]["delivered"]
    finalizer = chain.w3.eth.get_transaction(closed[0]["transactionHash"])["from"]
    assert finalizer in (nodes[1], nodes[2])
    assert registry.get_node(nodes[3]).stake < stake_before  # the no-show is slashed
    for i in (1, 2):
        assert coordinator.balance_of(nodes[i]) > 0


def test_undecodable_inputs_answered_with_empty_output(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    model = register_digits(chain, book)
    node_address = setup_node(anvil.rpc_url, book, 1, model.model_id)
    fund(chain, book, chain.address)
    client = InferenceClient.from_chain(chain)
    coordinator = client.coordinator
    (tensor,) = model.program.inputs
    zeros = np.zeros(tensor.size, dtype=np.int32)
    garbage = {
        "unknown kind": b"\x07garbage",
        "truncated": b"\x01\x00\x00\x00\x00\x09\x00\x00",
        "two tensors": encode_tensors([(zeros, tensor.scale), (zeros, tensor.scale)]),
        "wrong size": encode_tensors([(zeros[:3], tensor.scale)]),
        "wrong scale": encode_tensors([(zeros, tensor.scale + 1)]),
        "bad reference": b"\x02\x01\x55",
    }
    start = chain.w3.eth.block_number
    config = node_config(anvil.rpc_url, tmp_path / "n1", 1, model.model_id, start_block=start)
    node = RunningNode(config)
    try:
        fee = coordinator.quote(model.model_id, "none")
        now = int(chain.w3.eth.get_block("latest")["timestamp"])
        ids = {
            name: coordinator.request(
                model.model_id, data, "none", max_fee=fee, deadline=now + 600, token=client.token
            ).request_id
            for name, data in garbage.items()
        }
        good = client.request(model.model_id, np.load(DIGITS_SAMPLE)[:1], "none")
        for name, rid in ids.items():
            result = client.wait(rid, timeout=20)
            assert result.status == "fulfilled", name
            assert result.output == b"" and result.invalid_input, name
            assert result.outputs is None
        assert client.wait(good.request_id, timeout=20).outputs is not None
        jobs = wait_for(
            "every job to end",
            lambda: (
                (j := jobs_of(config.data_dir))
                and len(j) == len(ids) + 1
                and all(x.state.terminal for x in j.values())
                and j
            ),
        )
    finally:
        node.stop()
    for name, rid in ids.items():
        job = jobs[rid]
        assert job.outcome == "fulfilled" and job.output == b"", name
        assert job.input_error, name
    assert "holds 2 tensor(s)" in str(jobs[ids["two tensors"]].input_error)
    assert "scale" in str(jobs[ids["wrong scale"]].input_error)
    assert jobs[good.request_id].input_error is None
    log = JobLog.in_dir(config.data_dir)
    assert log.counters()["invalid_inputs"] == len(ids)
    log.close()
    # Paid like any answer: node fee plus the model price minus the royalty, per request.
    per_request = NODE_FEE + PRICE - PRICE * 1_000 // 10_000
    assert coordinator.balance_of(node_address) == per_request * (len(ids) + 1)
