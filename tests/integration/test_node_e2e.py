"""End to end on a real anvil: staked nodes serve the digits model in modes none and consensus.

The node services run in threads; requests go through ``InferenceClient``; the delivered
output must equal, bit for bit, what the runtime computes locally.
"""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from node_kit import (
    DIGITS_SAMPLE,
    RunningNode,
    fund,
    node_config,
    register_digits,
    setup_node,
)

from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.chain.inference import CoordinatorClient
from verinfer.client import InferenceClient
from verinfer.node.jobs import JobLog, JobState

pytestmark = pytest.mark.integration


def wait_jobs(data_dir: Path, n: int, timeout: float = 30.0) -> list[str]:
    """The outcomes of the node's jobs once ``n`` of them are terminal."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = JobLog.in_dir(data_dir)
        jobs = log.all()
        log.close()
        if len(jobs) >= n and all(j.state.terminal for j in jobs):
            return [str(j.outcome) for j in jobs]
        time.sleep(0.1)
    raise AssertionError(f"jobs in {data_dir} not done: {[(j.state, j.error) for j in jobs]}")


def test_mode_none_end_to_end(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    model = register_digits(chain, book)
    node_address = setup_node(anvil.rpc_url, book, 1, model.model_id)
    fund(chain, book, chain.address)
    config = node_config(
        anvil.rpc_url, tmp_path / "n1", 1, model.model_id, start_block=chain.w3.eth.block_number
    )
    node = RunningNode(config)
    try:
        client = InferenceClient.from_chain(chain)
        samples = np.load(DIGITS_SAMPLE)
        for sample in samples[:3]:
            x = sample[None, :]
            result = client.request(model.model_id, x, "none", wait=True, timeout=30)
            expected = model.program.run(x, trace=False)
            assert result.status == "fulfilled"
            assert result.assigned == [node_address]
            assert result.outputs_q is not None and result.outputs is not None
            assert np.array_equal(result.outputs_q[0], expected.outputs_q[0])
            assert np.array_equal(result.outputs[0], expected.outputs[0])
            assert client.status(result.request_id).status == "fulfilled"
        assert wait_jobs(config.data_dir, 3) == ["fulfilled"] * 3
        metrics = node.service.metrics
        assert metrics is not None
        url = f"http://127.0.0.1:{metrics.port}"
        health = json.loads(urllib.request.urlopen(f"{url}/health", timeout=5).read())
        assert health["ok"] and health["node"] == node_address
        assert health["jobs"]["confirmed"] == 3 and health["pending_jobs"] == 0
        text = urllib.request.urlopen(f"{url}/metrics", timeout=5).read().decode()
        assert 'verinfer_node_jobs{state="confirmed"} 3' in text
        assert "verinfer_node_requests_handled_total 3" in text
    finally:
        node.stop()
    coordinator = CoordinatorClient(chain, book.address("InferenceCoordinator"))
    assert coordinator.balance_of(node_address) > 0


def test_consensus_three_nodes(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    model = register_digits(chain, book)
    nodes = [setup_node(anvil.rpc_url, book, i, model.model_id) for i in (1, 2, 3)]
    fund(chain, book, chain.address)
    start = chain.w3.eth.block_number
    configs = [
        node_config(anvil.rpc_url, tmp_path / f"n{i}", i, model.model_id, start_block=start)
        for i in (1, 2, 3)
    ]
    running = [RunningNode(c) for c in configs]
    try:
        client = InferenceClient.from_chain(chain)
        x = np.load(DIGITS_SAMPLE)[4:5]
        result = client.request(model.model_id, x, "consensus", redundancy=3, wait=True, timeout=60)
        expected = model.program.run(x, trace=False)
        assert result.status == "fulfilled"
        assert sorted(result.assigned) == sorted(nodes)
        assert result.outputs_q is not None
        assert np.array_equal(result.outputs_q[0], expected.outputs_q[0])
        # An input no node can decode: all three answer the empty output, so it is delivered
        # (and paid) like any agreed output rather than leaving everyone a no-show.
        coordinator = client.coordinator
        now = int(chain.w3.eth.get_block("latest")["timestamp"])
        garbage = coordinator.request(
            model.model_id, b"\x01\x00garbage", "consensus", redundancy=3, token=client.token,
            max_fee=coordinator.quote(model.model_id, "consensus", 3), deadline=now + 600,
        )  # fmt: skip
        bad = client.wait(garbage.request_id, timeout=60)
        assert bad.status == "fulfilled" and bad.output == b"" and bad.invalid_input
        # Every node reveals (the ballot closes after the third), and each is paid.
        for c in configs:
            assert wait_jobs(c.data_dir, 2) == ["revealed", "revealed"]
    finally:
        for node in running:
            node.stop()
    assert coordinator.get_ballot(result.request_id).closed
    assert coordinator.get_ballot(garbage.request_id).closed
    for address in nodes:
        assert coordinator.balance_of(address) > 0


def test_restart_resumes_from_cursor(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    """Requests made while the node is down are answered when it comes back, once."""
    model = register_digits(chain, book)
    setup_node(anvil.rpc_url, book, 1, model.model_id)
    fund(chain, book, chain.address)
    config = node_config(
        anvil.rpc_url, tmp_path / "n1", 1, model.model_id, start_block=chain.w3.eth.block_number
    )
    client = InferenceClient.from_chain(chain)
    x = np.load(DIGITS_SAMPLE)[:1]
    node = RunningNode(config)
    first = client.request(model.model_id, x, "none", wait=True, timeout=30)
    node.stop()
    pending = [client.request(model.model_id, x, "none") for _ in range(3)]
    node = RunningNode(config)
    try:
        for sent in pending:
            assert client.wait(sent.request_id, timeout=30).status == "fulfilled"
        assert wait_jobs(config.data_dir, 4) == ["fulfilled"] * 4
    finally:
        node.stop()
    log = JobLog.in_dir(config.data_dir)
    assert log.get(str(first.request_id)) is not None
    assert log.counts()[JobState.CONFIRMED] == 4 and log.counters()["tx_sent"] == 4
