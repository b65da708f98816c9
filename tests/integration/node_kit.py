"""Helpers shared by the node tests and benchmarks: a registered model, staked nodes, configs.

Not a test module (no ``test_`` prefix); benchmarks import it by path.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from verinfer.chain.accounts import ANVIL_DEV_KEYS, dev_account
from verinfer.chain.client import Chain
from verinfer.chain.deployments import AddressBook
from verinfer.chain.inference import NodeRegistryClient
from verinfer.chain.token import Token
from verinfer.models.manifest import Manifest
from verinfer.models.onnx_check import inspect_onnx
from verinfer.models.registry import Mode, ModelInput, RegistryClient
from verinfer.node.config import NodeConfig, parse_config
from verinfer.node.service import NodeService
from verinfer.runtime import Program, compile_model
from verinfer.store import open_store

ROOT = Path(__file__).resolve().parents[2]
DIGITS = ROOT / "examples" / "models" / "digits_mlp.onnx"
DIGITS_SAMPLE = ROOT / "examples" / "models" / "digits_sample.npy"
TOKENS = 10**6  # TestUSD has 6 decimals
PRICE = 10_000  # 0.01 TUSD per inference
NODE_FEE = 5_000  # 0.005 TUSD per node


@dataclass(frozen=True)
class Model:
    model_id: int
    program: Program


def register_digits(chain: Chain, book: AddressBook) -> Model:
    """Store the digits MLP, its program and manifest; register it for none + consensus."""
    spec = inspect_onnx(DIGITS)
    program = compile_model(DIGITS)
    store = open_store()
    cid = str(store.put(spec.data))
    program_cid = str(store.put(program.to_bytes()))
    manifest = Manifest(
        name="digits", onnx_cid=cid, spec=spec, license="MIT", parent=0,
        program_cid=program_cid, program_hash=program.program_hash,
        weights_root=program.weights_root,
    )  # fmt: skip
    manifest_cid = str(store.put(manifest.to_bytes()))
    registry = RegistryClient(chain, book.address("ModelRegistry"))
    model_id, _ = registry.register(
        ModelInput(
            name="digits",
            cid=cid,
            price=PRICE,
            royalty_bps=1_000,
            modes=Mode.NONE | Mode.CONSENSUS,
            license="MIT",
            input_shapes=[list(t.shape) for t in spec.inputs],
            output_shapes=[list(t.shape) for t in spec.outputs],
            metadata_uri=f"ipfs://{manifest_cid}",
            program_hash=program.program_hash,
            weights_root=program.weights_root,
        )  # fmt: skip
    )
    return Model(model_id, program)


def fund(chain: Chain, book: AddressBook, address: str, tokens: int = 10_000) -> None:
    """TestUSD from the faucet and (devnet) ether for gas."""
    Token(chain, book.address("PaymentToken")).faucet(address, tokens * TOKENS)


def setup_node(
    rpc_url: str,
    book: AddressBook,
    index: int,
    model_id: int,
    modes: Mode = Mode.NONE | Mode.CONSENSUS,
    fee: int = NODE_FEE,
) -> str:
    """Fund anvil account ``index``, register it as a node, stake the minimum, serve the model."""
    deployer = Chain(rpc_url, dev_account(0))
    node = dev_account(index)
    fund(deployer, book, node.address)
    chain = Chain(rpc_url, node)
    registry = NodeRegistryClient(chain, book.address("NodeRegistry"))
    token = Token(chain, book.address("PaymentToken"))
    if not registry.get_node().registered:
        registry.register()
    registry.stake(max(registry.min_stake(), 1), token)
    registry.set_service(model_id, int(modes), fee)
    return str(node.address)


def node_config(
    rpc_url: str,
    data_dir: Path,
    index: int,
    model_id: int,
    *,
    modes: tuple[str, ...] = ("none", "consensus"),
    poll_interval: float = 0.05,
    start_block: int | None = None,
    metrics_port: int | None = 0,
) -> NodeConfig:
    """A config for anvil account ``index``; its key goes into VERINFER_NODE_KEY_<index>."""
    env = f"VERINFER_NODE_KEY_{index}"
    os.environ[env] = ANVIL_DEV_KEYS[index]
    data: dict[str, object] = {
        "rpc_url": rpc_url,
        "data_dir": str(data_dir),
        "key": {"env": env},
        "models": [{"id": model_id, "modes": list(modes), "fee": "0.005"}],
        "poll_interval": poll_interval,
        "metrics": {"enabled": metrics_port is not None, "port": metrics_port or 0},
    }
    if start_block is not None:
        data["start_block"] = start_block
    return parse_config(data)


def node_toml(config: NodeConfig) -> str:
    """The TOML text of ``config`` (for a node run as a subprocess)."""
    lines = [
        f'rpc_url = "{config.rpc_url}"',
        f'data_dir = "{config.data_dir}"',
        f"poll_interval = {config.poll_interval}",
    ]
    if config.start_block is not None:
        lines.append(f"start_block = {config.start_block}")
    lines += ["", "[key]", f'env = "{config.key.env}"', "", "[metrics]"]
    lines += [f"enabled = {str(config.metrics.enabled).lower()}", f"port = {config.metrics.port}"]
    for m in config.models:
        modes = ", ".join(f'"{x}"' for x in m.modes)
        lines += ["", "[[models]]", f"id = {m.id}", f"modes = [{modes}]", f'fee = "{m.fee}"']
    return "\n".join(lines) + "\n"


class RunningNode:
    """A NodeService in a thread (stopped and closed by ``stop``)."""

    def __init__(self, config: NodeConfig) -> None:
        self.service = NodeService(config)
        self.service.setup()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.service.run()
        except BaseException as exc:  # noqa: BLE001 - surfaced by stop()
            self.error = exc

    def stop(self) -> None:
        self.service.stop()
        self.thread.join(timeout=30)
        self.service.close()
        if self.error is not None:
            raise self.error


# -- the fault scenario: a node SIGKILLed at random moments while requests arrive -----------


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


def start_node_process(config_path: Path, log_path: Path, env: dict[str, str]) -> Any:
    import subprocess
    import sys

    with log_path.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "verinfer", "node", "start", "--config", str(config_path)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
        )  # fmt: skip


def run_fault_scenario(
    rpc_url: str,
    book: AddressBook,
    workdir: Path,
    n_requests: int,
    *,
    seed: int = 7,
    kill_every: tuple[float, float] = (0.3, 2.0),
    min_kills: int = 5,
    settle_timeout: float = 90.0,
) -> FaultReport:
    """Send ``n_requests`` (mode none) while killing and restarting the node at random
    moments; keep killing while it works off the backlog until ``min_kills``; then settle."""
    import random
    import signal
    import time

    import numpy as np

    from verinfer.chain.inference import CoordinatorClient, RequestStatus
    from verinfer.client import InferenceClient

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
    config_path = workdir / "node.toml"
    config_path.write_text(node_toml(config))
    env = {**os.environ, "VERINFER_NODE_KEY_1": ANVIL_DEV_KEYS[1]}
    fund(chain, book, chain.address)
    client = InferenceClient.from_chain(chain)
    client.token.approve(client.coordinator.address, 10**15)  # one approval for every request
    samples = np.load(DIGITS_SAMPLE)
    log_path = workdir / "node.log"
    proc = start_node_process(config_path, log_path, env)
    kills = 0
    ids: list[int] = []
    next_kill = time.monotonic() + rng.uniform(*kill_every)
    coordinator = CoordinatorClient(chain, book.address("InferenceCoordinator"))

    def maybe_kill() -> None:
        nonlocal proc, kills, next_kill
        if time.monotonic() >= next_kill:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            proc = start_node_process(config_path, log_path, env)
            next_kill = time.monotonic() + rng.uniform(*kill_every)

    try:
        for i in range(n_requests):
            sent = client.request(model.model_id, samples[i % len(samples)][None, :], "none",
                                  deadline_s=600)  # fmt: skip
            ids.append(sent.request_id)
            time.sleep(rng.uniform(0, 0.1))
            maybe_kill()
        # Keep killing while the backlog is worked off, then let the last incarnation finish.
        deadline = time.monotonic() + settle_timeout
        while time.monotonic() < deadline:
            statuses = [coordinator.get_request(r).status for r in ids]
            if all(s.settled for s in statuses):
                break
            if kills < min_kills:
                maybe_kill()
            time.sleep(0.1)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except Exception:  # noqa: BLE001
            proc.kill()
            proc.wait()
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
    events = coordinator.contract.events.InferenceFulfilled().get_logs(from_block=head)
    counts: dict[int, int] = {}
    for e in events:
        counts[int(e["args"]["requestId"])] = counts.get(int(e["args"]["requestId"]), 0) + 1
    # Every transaction the node ever sent: none may have reverted (it never sends twice).
    txs = reverted = 0
    for number in range(head + 1, chain.w3.eth.block_number + 1):
        block = chain.w3.eth.get_block(number, full_transactions=True)
        for tx in block["transactions"]:
            if str(tx["from"]).lower() == node_address.lower():
                txs += 1
                reverted += chain.w3.eth.get_transaction_receipt(tx["hash"])["status"] != 1
    # The node's credit: node fee plus (price - royalty) per fulfilled request.
    royalty = PRICE * 1_000 // 10_000
    expected = len(fulfilled) * (NODE_FEE + PRICE - royalty)
    return FaultReport(
        requests=len(ids), fulfilled=len(fulfilled), refunded=len(refunded), kills=kills,
        node_txs=txs, node_reverted_txs=reverted, fulfil_events=counts,
        node_balance=coordinator.balance_of(node_address), expected_node_balance=expected,
        seconds=time.monotonic() - started,
        log_events={
            name: log_path.read_text().count(f"event='{name}'")
            for name in ("node.started", "job.rebroadcast", "job.rolled_back", "tx.refused",
                         "tx.reverted", "job.closed")
        },
    )  # fmt: skip
