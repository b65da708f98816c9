"""The watcher against a real anvil: bounded ranges, confirmations, replay, malformed logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from node_kit import DIGITS_SAMPLE, fund, node_config, register_digits, setup_node

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo
from verinfer.client import InferenceClient
from verinfer.node.jobs import JobLog, JobState
from verinfer.node.watcher import Watcher

pytestmark = pytest.mark.integration


def make_watcher(
    chain: Chain, book: AddressBook, rpc_url: str, data_dir: Path, model_id: int, start: int,
    **overrides: object,
) -> Watcher:  # fmt: skip
    config = node_config(rpc_url, data_dir, 1, model_id, start_block=start)
    config = config.model_copy(update=overrides)
    coordinator = chain.contract("InferenceCoordinator", book.address("InferenceCoordinator"))
    return Watcher(
        chain.w3, coordinator, JobLog.in_dir(data_dir), config, dev_account(1).address,
        start_block=start,
    )  # fmt: skip


def test_cursor_ranges_confirmations_and_replay(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    model = register_digits(chain, book)
    setup_node(anvil.rpc_url, book, 1, model.model_id)
    fund(chain, book, chain.address)
    client = InferenceClient.from_chain(chain)
    client.token.approve(client.coordinator.address, 10**12)
    start = chain.w3.eth.block_number + 1
    x = np.load(DIGITS_SAMPLE)[:1]
    ids = [client.request(model.model_id, x, "none").request_id for _ in range(4)]
    head = chain.w3.eth.block_number

    # Bounded ranges: max_block_range=1 needs one range per block (4 blocks here).
    watcher = make_watcher(
        chain, book, anvil.rpc_url, tmp_path / "a", model.model_id, start, max_block_range=1
    )
    polls = watcher.poll(head, max_ranges=2)
    assert [(p.from_block, p.to_block) for p in polls] == [(start, start), (start + 1, start + 1)]
    assert watcher.jobs.cursor() == start + 1
    polls = watcher.poll(head)
    assert polls[-1].to_block == head and watcher.jobs.cursor() == head
    assert sorted(int(j.request_id) for j in watcher.jobs.in_state(JobState.SEEN)) == ids
    assert watcher.poll(head) == []  # nothing new: no range, no RPC

    # Replaying the same blocks (a crash before the cursor moved) adds nothing.
    again = watcher.handle_range(start, head)
    assert again.new_jobs == 0 and len(watcher.jobs.all()) == 4

    # Confirmations: with 3, the last two blocks wait for two more blocks on top.
    late = make_watcher(
        chain, book, anvil.rpc_url, tmp_path / "b", model.model_id, start, confirmations=3
    )
    late.poll(head)
    assert late.jobs.cursor() == head - 2 and len(late.jobs.all()) == 2
    chain.w3.provider.make_request("anvil_mine", [2])
    late.poll(chain.w3.eth.block_number)
    assert len(late.jobs.all()) == 4


def test_malformed_and_foreign_events(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    model = register_digits(chain, book)
    watcher = make_watcher(chain, book, anvil.rpc_url, tmp_path, model.model_id, 0)
    topic = next(t for t, n in watcher.topics.items() if n == "InferenceRequested")
    bad = {
        "address": watcher.coordinator.address,
        "topics": [topic, (7).to_bytes(32, "big")],  # indexed args missing, data garbage
        "data": b"\x01\x02",
        "blockNumber": 5,
        "logIndex": 0,
        "transactionHash": b"\x11" * 32,
        "transactionIndex": 0,
        "blockHash": b"\x22" * 32,
        "removed": False,
    }
    unrelated = {**bad, "topics": [b"\x33" * 32]}
    new_jobs, closes, malformed = watcher.interpret([bad, unrelated])
    assert malformed == 1 and closes == []
    assert len(new_jobs) == 1 and new_jobs[0].request_id == "7" and new_jobs[0].error
    watcher.jobs.record_range(new_jobs, closes, 5)
    job = watcher.jobs.get("7")
    assert job is not None and job.state == JobState.FAILED
