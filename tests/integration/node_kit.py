"""Helpers shared by the node tests and benchmarks: a registered model, staked nodes, configs.

Not a test module (no ``test_`` prefix); benchmarks import it by path.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

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


def register_digits(chain: Chain, book: AddressBook, *, optimistic: bool = False) -> Model:
    """Store the digits MLP, its program and manifest; register it for none + consensus
    (and, with ``optimistic``, mode optimistic with the program's step commitments)."""
    return register_onnx(chain, book, DIGITS, compile_model(DIGITS), "digits", optimistic)


def register_onnx(
    chain: Chain, book: AddressBook, path: Path, program: Program, name: str,
    optimistic: bool = False,
) -> Model:  # fmt: skip
    """Store the ONNX file at ``path``, its compiled ``program`` and a manifest; register it
    at ``PRICE`` for none + consensus (+ optimistic)."""
    spec = inspect_onnx(path)
    store = open_store()
    cid = str(store.put(spec.data))
    program_cid = str(store.put(program.to_bytes()))
    manifest = Manifest(
        name=name, onnx_cid=cid, spec=spec, license="MIT", parent=0,
        program_cid=program_cid, program_hash=program.program_hash,
        weights_root=program.weights_root,
    )  # fmt: skip
    manifest_cid = str(store.put(manifest.to_bytes()))
    registry = RegistryClient(chain, book.address("ModelRegistry"))
    extra: dict[str, object] = {}
    if optimistic:
        from verinfer.optimistic.descriptors import build_descriptors, steps_root

        extra = {
            "steps_root": "0x" + steps_root(build_descriptors(program)).hex(),
            "n_steps": len(program.steps), "n_constants": len(program.constants),
        }  # fmt: skip
    model_id, _ = registry.register(
        ModelInput(
            name=name,
            cid=cid,
            price=PRICE,
            royalty_bps=1_000,
            modes=Mode.NONE | Mode.CONSENSUS | (Mode.OPTIMISTIC if optimistic else Mode(0)),
            license="MIT",
            input_shapes=[list(t.shape) for t in spec.inputs],
            output_shapes=[list(t.shape) for t in spec.outputs],
            metadata_uri=f"ipfs://{manifest_cid}",
            program_hash=program.program_hash,
            weights_root=program.weights_root,
            **extra,  # type: ignore[arg-type]
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
