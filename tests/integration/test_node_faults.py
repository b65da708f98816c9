"""Crash safety: node processes are SIGKILLed at random moments while requests arrive.

Mode none: every request must end fulfilled exactly once (or refunded), none lost, the node
must never send a transaction that reverts (it never answers twice), and it is paid exactly
once per request. Consensus: three nodes, one of them killed again and again; every request
ends delivered exactly once (or refunded), each node commits and reveals at most once per
request and is paid exactly what the closed ballots owe it. benchmarks/bench_node_faults.py
runs the mode-none scenario with 200 requests.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from fault_kit import run_consensus_fault_scenario, run_fault_scenario

from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import DevnetInfo

pytestmark = pytest.mark.integration

N_REQUESTS = 30
N_CONSENSUS_REQUESTS = 8


def test_sigkill_restarts_lose_nothing(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    report = run_fault_scenario(anvil.rpc_url, book, tmp_path, N_REQUESTS, seed=11, min_kills=3)
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


def test_consensus_sigkill_restarts_pay_once(
    chain: Chain, book: AddressBook, anvil: DevnetInfo, tmp_path: Path
) -> None:
    report = run_consensus_fault_scenario(
        anvil.rpc_url, book, tmp_path, N_CONSENSUS_REQUESTS, seed=5
    )
    logs = "".join(p.read_text() for p in sorted(tmp_path.glob("node*.log")))
    assert report.requests == N_CONSENSUS_REQUESTS
    assert report.kills >= 3 and report.log_events["node.started"] >= 2, report
    assert report.fulfilled + report.refunded == N_CONSENSUS_REQUESTS, report
    # Delivered exactly once; no node committed or revealed twice for a request.
    assert len(report.fulfil_events) == report.fulfilled, report
    assert all(count == 1 for count in report.fulfil_events.values()), report
    assert all(count == 1 for count in report.commit_events.values()), report
    assert all(count == 1 for count in report.reveal_events.values()), report
    # Every node sent exactly its commits and reveals, none reverted, and is paid once each.
    for node, (sent, reverted) in report.node_txs.items():
        own = [k for k in (*report.commit_events, *report.reveal_events) if k[1] == node]
        assert (sent, reverted) == (len(own), 0), (node, report)
    assert report.balances == report.expected_balances, report
    assert report.closed_by_test == 0 and report.unfinished_jobs == {}, report
    assert "Traceback" not in logs, logs[-3000:]
