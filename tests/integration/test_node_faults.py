"""Crash safety: the node process is SIGKILLed at random moments while requests arrive.

Every request must end fulfilled exactly once (or refunded), none lost, the node must never
send a transaction that reverts (it never answers twice), and it is paid exactly once per
request. benchmarks/bench_node_faults.py runs the same scenario with 200 requests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from node_kit import run_fault_scenario

from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo

pytestmark = pytest.mark.integration

N_REQUESTS = 30


def test_sigkill_restarts_lose_nothing(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    report = run_fault_scenario(anvil.rpc_url, book, tmp_path, N_REQUESTS, seed=11)
    log = (tmp_path / "node.log").read_text()
    assert report.requests == N_REQUESTS
    assert report.kills >= 3, report
    assert report.fulfilled + report.refunded == N_REQUESTS, report
    assert all(count == 1 for count in report.fulfil_events.values()), report
    assert len(report.fulfil_events) == report.fulfilled
    assert report.node_reverted_txs == 0, report
    assert report.node_txs == report.fulfilled, report
    assert report.node_balance == report.expected_node_balance, report
    assert "Traceback" not in log, log[-3000:]
