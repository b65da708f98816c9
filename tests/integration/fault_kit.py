"""Fault scenarios: node processes SIGKILLed at random moments (and restarted) while
requests arrive. Shared by tests/integration/test_node_faults.py and
benchmarks/bench_node_faults.py; not a test module (no ``test_`` prefix).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from node_kit import (
    DIGITS_SAMPLE,
    NODE_FEE,
    PRICE,
    fund,
    node_config,
    node_toml,
    register_digits,
    setup_node,
)

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.inference import CoordinatorClient, RequestStatus
from verinfer.models.registry import Mode
from verinfer.node.config import NodeConfig
from verinfer.node.jobs import JobLog, JobState

ROYALTY = PRICE * 1_000 // 10_000  # register_digits: 10%
LOG_EVENTS = (
    "node.started", "job.rebroadcast", "job.rolled_back", "tx.refused", "tx.reverted",
    "job.closed",
)  # fmt: skip


class NodeProcess:
    """``verinfer node start`` as a subprocess, appending to ``<name>.log`` in ``workdir``."""

    def __init__(self, config: NodeConfig, workdir: Path, name: str) -> None:
        self.config = config
        self.config_path = workdir / f"{name}.toml"
        self.config_path.write_text(node_toml(config))
        self.log_path = workdir / f"{name}.log"
        env_name = str(config.key.env)
        self.env = {**os.environ, env_name: os.environ[env_name]}
        self.proc: Any = None
        self._started_before = 0

    def start(self) -> None:
        self._started_before = self._count("node.started")
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "verinfer", "node", "start", "--config",
                 str(self.config_path)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env,
            )  # fmt: skip

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill()

    def ready(self) -> bool:
        """Whether this incarnation is up (it logged node.started)."""
        return self._count("node.started") > self._started_before

    def _count(self, event: str) -> int:
        if not self.log_path.exists():
            return 0
        return self.log_path.read_text().count(f"event='{event}'")

    def log_events(self) -> dict[str, int]:
        return {name: self._count(name) for name in LOG_EVENTS}

    def jobs(self) -> dict[str, str]:
        """request id -> state, from the node's job log."""
        log = JobLog.in_dir(self.config.data_dir)
        try:
            return {j.request_id: str(j.state) for j in log.all()}
        finally:
            log.close()


class KillPlan:
    """SIGKILL ``node`` at a random moment (``every`` seconds, uniform) after each incarnation
    is up, and restart it. Requests go out in ``min_kills + 1`` batches, the next one held
    back until the current incarnation was killed, so every kill lands on a node with work
    in flight (node start-up takes seconds; a node works off a batch in a fraction of one)."""

    def __init__(
        self,
        node: NodeProcess,
        rng: random.Random,
        every: tuple[float, float],
        min_kills: int,
        n_requests: int,
    ) -> None:
        self.node, self.rng, self.every = node, rng, every
        self.min_kills, self.n = min_kills, n_requests
        self.kills = 0
        self.kill_at: float | None = None

    def step(self) -> None:
        """Kill and restart the node if its moment has come."""
        now = time.monotonic()
        if self.kill_at is None:
            if self.node.ready():
                self.kill_at = now + self.rng.uniform(*self.every)
        elif now >= self.kill_at:
            self.node.kill()
            self.kills += 1
            self.kill_at = None
            self.node.start()

    def after_request(self, sent: int, timeout: float = 60.0) -> None:
        """Step; at the end of a batch, wait (stepping) until the node was killed."""
        self.step()
        give_up = time.monotonic() + timeout
        while (
            self.kills < self.min_kills
            and sent >= (self.kills + 1) * self.n / (self.min_kills + 1)
            and time.monotonic() < give_up
        ):
            time.sleep(0.05)
            self.step()


def sender_txs(chain: Chain, addresses: list[str], from_block: int) -> dict[str, tuple[int, int]]:
    """address -> (transactions sent since ``from_block``, how many of them reverted)."""
    found = {a.lower(): [0, 0] for a in addresses}
    for number in range(from_block + 1, chain.w3.eth.block_number + 1):
        block = chain.w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            counts = found.get(str(tx["from"]).lower())
            if counts is not None:
                counts[0] += 1
                counts[1] += chain.w3.eth.get_transaction_receipt(tx["hash"])["status"] != 1
    return {a: (found[a.lower()][0], found[a.lower()][1]) for a in addresses}


def _event_counts(coordinator: CoordinatorClient, name: str, head: int) -> dict[Any, int]:
    counts: dict[Any, int] = {}
    for e in getattr(coordinator.contract.events, name)().get_logs(from_block=head):
        rid = int(e["args"]["requestId"])
        key = (rid, str(e["args"]["node"])) if "node" in e["args"] else rid
        counts[key] = counts.get(key, 0) + 1
    return counts


# -- mode none: one node -------------------------------------------------------------------


@dataclass
class FaultReport:
    requests: int
    fulfilled: int
    refunded: int
    kills: int
    node_txs: int
    node_reverted_txs: int
    fulfil_events: dict[int, int]
    node_balance: int
    expected_node_balance: int
    seconds: float
    log_events: dict[str, int]


def run_fault_scenario(
    rpc_url: str,
    book: AddressBook,
    workdir: Path,
    n_requests: int,
    *,
    seed: int = 7,
    kill_every: tuple[float, float] = (0.05, 0.8),
    min_kills: int = 5,
    settle_timeout: float = 90.0,
) -> FaultReport:
    """Send ``n_requests`` (mode none) while killing and restarting the node at random
    moments (at least ``min_kills`` times while requests arrive); then let it settle."""
    rng = random.Random(seed)
    started = time.monotonic()
    chain = Chain(rpc_url, dev_account(0))
    model = register_digits(chain, book)
    node_address = setup_node(rpc_url, book, 1, model.model_id, modes=Mode.NONE)
    head = chain.w3.eth.block_number
    config = node_config(
        rpc_url, workdir / "node", 1, model.model_id, modes=("none",), start_block=head,
        poll_interval=0.05, metrics_port=None,
    )  # fmt: skip
    node = NodeProcess(config, workdir, "node")
    from verinfer.client import InferenceClient

    fund(chain, book, chain.address)
    client = InferenceClient.from_chain(chain)
    client.token.approve(client.coordinator.address, 10**15)  # one approval for every request
    samples = np.load(DIGITS_SAMPLE)
    coordinator = client.coordinator
    plan = KillPlan(node, rng, kill_every, min_kills, n_requests)
    ids: list[int] = []
    node.start()
    try:
        for i in range(n_requests):
            sent = client.request(model.model_id, samples[i % len(samples)][None, :], "none",
                                  deadline_s=600)  # fmt: skip
            ids.append(sent.request_id)
            time.sleep(rng.uniform(0, 0.05))
            plan.after_request(i + 1)
        deadline = time.monotonic() + settle_timeout
        while time.monotonic() < deadline:
            if all(coordinator.get_request(r).status.settled for r in ids):
                break
            time.sleep(0.1)
    finally:
        node.terminate()
    # Anything still open is refunded after its deadline: nothing may stay stuck.
    open_ids = [r for r in ids if not coordinator.get_request(r).status.settled]
    if open_ids:
        chain.w3.provider.make_request("evm_increaseTime", [700])
        chain.w3.provider.make_request("evm_mine", [])
        for r in open_ids:
            coordinator.refund(r)
    statuses = {r: coordinator.get_request(r).status for r in ids}
    fulfilled = [r for r, s in statuses.items() if s == RequestStatus.FULFILLED]
    refunded = [r for r, s in statuses.items() if s == RequestStatus.REFUNDED]
    txs, reverted = sender_txs(chain, [node_address], head)[node_address]
    return FaultReport(
        requests=len(ids), fulfilled=len(fulfilled), refunded=len(refunded), kills=plan.kills,
        node_txs=txs, node_reverted_txs=reverted,
        fulfil_events=_event_counts(coordinator, "InferenceFulfilled", head),
        node_balance=coordinator.balance_of(node_address),
        expected_node_balance=len(fulfilled) * (NODE_FEE + PRICE - ROYALTY),
        seconds=time.monotonic() - started, log_events=node.log_events(),
    )  # fmt: skip


# -- consensus: three nodes, one of them killed ----------------------------------------------


@dataclass
class ConsensusFaultReport:
    requests: int
    fulfilled: int
    refunded: int
    kills: int
    victim: str
    fulfil_events: dict[int, int]
    commit_events: dict[tuple[int, str], int]  # (request, node) -> Committed events
    reveal_events: dict[tuple[int, str], int]
    node_txs: dict[str, tuple[int, int]]  # node -> (sent, reverted)
    balances: dict[str, int]
    expected_balances: dict[str, int]  # from the closed ballots, each reveal paid once
    closed_by_test: int  # ballots the scenario had to finalize or refund itself
    unfinished_jobs: dict[str, dict[str, str]]  # node -> request -> state, if not terminal
    seconds: float
    log_events: dict[str, int]


def run_consensus_fault_scenario(
    rpc_url: str,
    book: AddressBook,
    workdir: Path,
    n_requests: int,
    *,
    seed: int = 7,
    kill_every: tuple[float, float] = (0.05, 0.8),
    min_kills: int = 3,
    settle_timeout: float = 60.0,
) -> ConsensusFaultReport:
    """Three node processes serve ``n_requests`` consensus requests (k = 3) while one of
    them, picked at random, is SIGKILLed at random moments and restarted."""
    from verinfer.client import InferenceClient

    rng = random.Random(seed)
    started = time.monotonic()
    chain = Chain(rpc_url, dev_account(0))
    model = register_digits(chain, book)
    addresses = {
        i: setup_node(rpc_url, book, i, model.model_id, modes=Mode.CONSENSUS) for i in (1, 2, 3)
    }
    head = chain.w3.eth.block_number
    nodes = {
        i: NodeProcess(
            node_config(
                rpc_url, workdir / f"node{i}", i, model.model_id, modes=("consensus",),
                start_block=head, poll_interval=0.05, metrics_port=None,
            ),
            workdir, f"node{i}",
        )
        for i in addresses
    }  # fmt: skip
    victim = rng.choice(sorted(nodes))
    fund(chain, book, chain.address)
    client = InferenceClient.from_chain(chain)
    client.token.approve(client.coordinator.address, 10**15)
    coordinator = client.coordinator
    samples = np.load(DIGITS_SAMPLE)
    plan = KillPlan(nodes[victim], rng, kill_every, min_kills, n_requests)
    ids: list[int] = []

    def done(r: int) -> bool:
        info = coordinator.get_request(r)
        return info.status == RequestStatus.REFUNDED or (
            info.status == RequestStatus.FULFILLED and coordinator.get_ballot(r).closed
        )

    for node in nodes.values():
        node.start()
    try:
        for i in range(n_requests):
            sent = client.request(model.model_id, samples[i % len(samples)][None, :],
                                  "consensus", redundancy=3, deadline_s=600)  # fmt: skip
            ids.append(sent.request_id)
            time.sleep(rng.uniform(0, 0.1))
            plan.after_request(i + 1)
        # Settled on-chain, and every node has seen it so (its ballot closed).
        deadline = time.monotonic() + settle_timeout
        while time.monotonic() < deadline:
            if all(done(r) for r in ids) and all(
                JobState(s).terminal for node in nodes.values() for s in node.jobs().values()
            ):
                break
            time.sleep(0.1)
    finally:
        for node in nodes.values():
            node.terminate()
    # Whatever is still open closes the way anyone may close it: nothing stays stuck.
    left = [r for r in ids if not done(r)]
    if left:
        chain.w3.provider.make_request("evm_increaseTime", [700])
        chain.w3.provider.make_request("evm_mine", [])
        for r in left:
            if coordinator.get_request(r).status == RequestStatus.FULFILLED:
                coordinator.finalize(r)
            else:
                coordinator.refund(r)
    statuses = {r: coordinator.get_request(r).status for r in ids}
    expected = {a: 0 for a in addresses.values()}
    share = PRICE - ROYALTY
    for r, status in statuses.items():
        if status != RequestStatus.FULFILLED:
            continue
        ballot = coordinator.get_ballot(r)
        order = coordinator.assigned_nodes(r)
        agreeing = [a for bit, a in enumerate(order) if ballot.revealed >> bit & 1]
        for n, address in enumerate(agreeing):  # every node is honest: all reveals agree
            expected[address] += NODE_FEE + share // len(agreeing)
            if n == 0:
                expected[address] += share - len(agreeing) * (share // len(agreeing))
    unfinished = {}
    for i, node in nodes.items():
        states = {r: s for r, s in node.jobs().items() if not JobState(s).terminal}
        if states:
            unfinished[addresses[i]] = states
    return ConsensusFaultReport(
        requests=len(ids),
        fulfilled=sum(s == RequestStatus.FULFILLED for s in statuses.values()),
        refunded=sum(s == RequestStatus.REFUNDED for s in statuses.values()),
        kills=plan.kills, victim=addresses[victim],
        fulfil_events=_event_counts(coordinator, "InferenceFulfilled", head),
        commit_events=_event_counts(coordinator, "Committed", head),
        reveal_events=_event_counts(coordinator, "Revealed", head),
        node_txs=sender_txs(chain, list(addresses.values()), head),
        balances={a: coordinator.balance_of(a) for a in addresses.values()},
        expected_balances=expected, closed_by_test=len(left), unfinished_jobs=unfinished,
        seconds=time.monotonic() - started, log_events=nodes[victim].log_events(),
    )  # fmt: skip
