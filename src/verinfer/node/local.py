"""A node on this machine in a few calls: stake and serve a model, run the daemon in a thread.

For the demo, examples and tests. Operators run `verinfer node start --config node.toml`.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from verinfer.chain.client import Chain
from verinfer.chain.connect import deployed_address
from verinfer.chain.inference import InferenceMode, NodeRegistryClient
from verinfer.chain.token import Token, format_units


def ensure_serving(
    node_chain: Chain,
    model_id: int,
    *,
    fee: int,
    modes: int = int(InferenceMode.NONE),
    stake: int | None = None,
) -> None:
    """Register ``node_chain``'s account as a node if needed, top its stake up to ``stake``
    (default: the minimum; devnet faucet tokens if short) and serve ``model_id``."""
    nodes = NodeRegistryClient(node_chain, deployed_address(node_chain, "NodeRegistry"))
    token = Token(node_chain, deployed_address(node_chain, "PaymentToken"))
    info = nodes.get_node()
    if not info.registered:
        nodes.register()
    target = stake if stake is not None else nodes.min_stake()
    if info.stake < target:
        need = target - info.stake
        if token.balance_of(node_chain.address) < need:
            token.faucet(node_chain.address, need)
        nodes.stake(need, token)
    service = nodes.get_service(model_id)
    if (service.modes, service.fee) != (modes, fee):
        nodes.set_service(model_id, modes, fee)


@contextmanager
def node_in_thread(
    node_chain: Chain, model_id: int, fee: int, *, modes: tuple[str, ...] = ("none",),
    decimals: int = 6,
) -> Iterator[None]:  # fmt: skip
    """Run verinfer's node daemon for ``node_chain``'s account in a background thread while
    the block runs; stop it and wait for it on exit."""
    from verinfer.node.config import parse_config
    from verinfer.node.service import NodeService

    key_env = f"VERINFER_LOCAL_NODE_KEY_{threading.get_ident()}"
    os.environ[key_env] = node_chain.signer().key.hex()
    with tempfile.TemporaryDirectory(prefix="verinfer-node-") as data_dir:
        config = parse_config(
            {
                "rpc_url": node_chain.rpc_url,
                "key": {"env": key_env},
                "models": [
                    {"id": model_id, "modes": list(modes), "fee": format_units(fee, decimals)}
                ],
                "data_dir": data_dir,
                "poll_interval": 0.2,
                "start_block": node_chain.w3.eth.block_number,
                "metrics": {"enabled": False},
                "coordinator": deployed_address(node_chain, "InferenceCoordinator"),
                "node_registry": deployed_address(node_chain, "NodeRegistry"),
                "model_registry": deployed_address(node_chain, "ModelRegistry"),
            },
            source="in-process node",
        )
        service = NodeService(config)
        service.setup()
        thread = threading.Thread(target=service.run, name="verinfer-node", daemon=True)
        thread.start()
        try:
            yield
        finally:
            service.stop()
            thread.join(timeout=30)
            service.close()
            os.environ.pop(key_env, None)
