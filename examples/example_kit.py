"""Shared steps of the example dApps' devnet scripts and tests, on verinfer's public APIs.

* ``register_model``: what ``verinfer model add FILE --calibration SAMPLE`` does (store the ONNX
  file, its compiled program and manifest by CID; register cid, programHash and weightsRoot).
* ``serve_model``: stake a node account and serve a model (what ``verinfer node`` setup does).
* ``answer_with_runtime``: be that node once: run the registered program on the request's
  input bytes with the deterministic runtime and ``fulfil`` the request.
* ``run_node``: run verinfer's node daemon in a background thread (the real node).
* ``wait_settled``: poll the coordinator until a request is fulfilled or refunded.
* ``add_devnet_args`` / ``model_and_node`` / ``request_and_settle``: the devnet scripts' shared
  options, model + node setup, and one request answered by the node.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import structlog

from verinfer.chain.accounts import dev_account
from verinfer.chain.client import Chain
from verinfer.chain.connect import deployed_address
from verinfer.chain.inference import (
    CoordinatorClient,
    RequestInfo,
    RequestStatus,
)
from verinfer.chain.token import format_units
from verinfer.errors import ChainError, ModelError
from verinfer.models.onnx_check import inspect_onnx
from verinfer.models.publish import draft_input, final_input, store_model
from verinfer.models.registry import Mode, RegistryClient
from verinfer.node.executor import decode_for_program, encode_outputs
from verinfer.node.local import ensure_serving, node_in_thread
from verinfer.runtime import Program, compile_model
from verinfer.store import open_store


@dataclass(frozen=True)
class RegisteredModel:
    model_id: int
    program: Program
    cid: str

    @property
    def input_scale(self) -> int:
        return self.program.inputs[0].scale

    @property
    def output_scale(self) -> int:
        return self.program.outputs[0].scale


def register_model(
    chain: Chain,
    onnx_path: Path,
    sample_path: Path,
    *,
    name: str,
    price: int = 0,
    registry_address: str | None = None,
) -> RegisteredModel:
    """Compile (calibrated on the sample), store and register a model; mode none."""
    spec = inspect_onnx(onnx_path, batch=1)
    program = compile_model(onnx_path, np.load(sample_path), batch=1)
    draft = draft_input(spec, program, name=name, price=price, modes=Mode.NONE, license="MIT")
    stored = store_model(open_store(), spec, program, name=name, license="MIT", parent=0)
    registry = RegistryClient(chain, registry_address or deployed_address(chain, "ModelRegistry"))
    model_id, _ = registry.register(final_input(draft, stored, None))
    cid = stored.cid
    return RegisteredModel(model_id, program, cid)


def serve_model(node_chain: Chain, model_id: int, *, fee: int) -> None:
    """Stake ``node_chain``'s account (the minimum) and serve ``model_id`` in mode none."""
    ensure_serving(node_chain, model_id, fee=fee)


def request_input(coordinator: CoordinatorClient, request_id: int) -> bytes:
    """The input bytes of a request, from its InferenceRequested event."""
    logs = coordinator.contract.events.InferenceRequested().get_logs(
        from_block=0, argument_filters={"requestId": request_id}
    )
    if not logs:
        raise ChainError(f"no InferenceRequested event for request {request_id}")
    return bytes(logs[0]["args"]["input"])


def assigned_nodes(coordinator: CoordinatorClient, request_id: int) -> list[str]:
    logs = coordinator.contract.events.InferenceRequested().get_logs(
        from_block=0, argument_filters={"requestId": request_id}
    )
    return [str(a) for a in logs[0]["args"]["assigned"]] if logs else []


def compute_output(program: Program, input_bytes: bytes) -> bytes:
    """What an honest node answers: the program run on the decoded input, encoded."""
    execution = program.run(decode_for_program(program, input_bytes), trace=False)
    return encode_outputs(program, execution.outputs_q)


def answer_with_runtime(
    node_chain: Chain, coordinator_address: str, request_id: int, program: Program
) -> bytes:
    """Act as the assigned node once: compute the output and ``fulfil`` the request."""
    coordinator = CoordinatorClient(node_chain, coordinator_address)
    output = compute_output(program, request_input(coordinator, request_id))
    coordinator.fulfil(request_id, output)
    return output


def wait_settled(
    coordinator: CoordinatorClient, request_id: int, *, timeout: float = 120.0
) -> RequestInfo:
    """Poll until the request is fulfilled or refunded; ChainError on timeout."""
    end = time.monotonic() + timeout
    while True:
        info = coordinator.get_request(request_id)
        if info.status in (RequestStatus.FULFILLED, RequestStatus.REFUNDED):
            return info
        if time.monotonic() > end:
            raise ChainError(
                f"request {request_id} is still {info.status.name.lower()} after {timeout:.0f} s",
                hint="is a node serving the model running? (`verinfer node start`)",
            )
        time.sleep(0.5)


def load_registered(
    chain: Chain, model_id: int, onnx_path: Path, sample_path: Path
) -> RegisteredModel:
    """A model registered earlier from these files: recompiled here and checked against the
    registry's programHash (the input scale the dApp encodes at comes from this program)."""
    record = RegistryClient(chain, deployed_address(chain, "ModelRegistry")).get(model_id)
    program = compile_model(onnx_path, np.load(sample_path), batch=1)
    if program.program_hash != record.program_hash:
        raise ModelError(
            f"model {model_id} is not {onnx_path.name} compiled on {sample_path.name}: "
            f"programHash {record.program_hash} != {program.program_hash}",
            hint="leave out --model-id to register the example's model",
        )
    return RegisteredModel(model_id, program, record.cid)


@contextmanager
def run_node(
    node_chain: Chain, model_id: int, fee: int, *, enabled: bool = True, decimals: int = 6
) -> Iterator[None]:
    """Run verinfer's node daemon for ``node_chain``'s account in a background thread while
    the block runs (unless ``enabled`` is false: an external node serves the model)."""
    if not enabled:
        yield
        return
    with node_in_thread(node_chain, model_id, fee, decimals=decimals):
        yield


def node_config_toml(rpc_url: str, model_id: int, fee: int, *, decimals: int = 6) -> str:
    """A `verinfer node start --config` file serving ``model_id`` (key from $VERINFER_NODE_KEY)."""
    return (
        f'rpc_url = "{rpc_url}"\n'
        'data_dir = "./example-node-data"\n'
        "\n[key]\n"
        'env = "VERINFER_NODE_KEY"\n'
        "\n[metrics]\n"
        "enabled = false\n"
        "\n[[models]]\n"
        f"id = {model_id}\n"
        'modes = ["none"]\n'
        f'fee = "{format_units(fee, decimals)}"\n'
    )


def quiet_logs() -> None:
    """Show only warnings from verinfer's structlog loggers (the scripts print a summary)."""
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def add_devnet_args(parser: argparse.ArgumentParser) -> None:
    """The options every devnet script has: RPC URL, model reuse, node choice, logs, timeout."""
    parser.add_argument("--rpc-url", default=None)
    parser.add_argument("--model-id", type=int, default=None, help="reuse a registered model")
    parser.add_argument(
        "--register-only",
        action="store_true",
        help="register the model, stake dev account 1 as its node, print a node config, stop",
    )
    parser.add_argument("--verbose", action="store_true", help="show verinfer's logs")
    parser.add_argument("--external-node", action="store_true", help="wait for your own node")
    parser.add_argument("--timeout", type=float, default=120.0)


def model_and_node(
    chain: Chain,
    args: argparse.Namespace,
    onnx_path: Path,
    sample_path: Path,
    *,
    name: str,
    label: str,
    price: int,
    fee: int,
) -> tuple[RegisteredModel, Chain]:
    """Register the model (or load ``--model-id``) and stake dev account 1 as its node (unless
    ``--external-node``); with ``--register-only`` also print that node's config file."""
    if args.model_id is None:
        model = register_model(chain, onnx_path, sample_path, name=name, price=price)
        print(f"registered the {label} as model {model.model_id}")
    else:
        model = load_registered(chain, args.model_id, onnx_path, sample_path)
    node_chain = Chain(chain.rpc_url, dev_account(1))
    if not args.external_node:
        serve_model(node_chain, model.model_id, fee=fee)
        print(f"node {node_chain.address} staked and serving model {model.model_id}")
    if args.register_only:
        print("\nnode config (save as node.toml, then `verinfer node start -c node.toml`):\n")
        print(node_config_toml(chain.rpc_url, model.model_id, fee))
    return model, node_chain


def request_and_settle(
    chain: Chain,
    node_chain: Chain,
    model: RegisteredModel,
    fee: int,
    args: argparse.Namespace,
    send: Callable[[], int],
    call: str,
) -> tuple[int, RequestInfo]:
    """With the node running (ours, or ``--external-node``), ``send()`` the dApp's request and
    wait until it is settled; returns (request id, its final state)."""
    coordinator = CoordinatorClient(chain, deployed_address(chain, "InferenceCoordinator"))
    with run_node(node_chain, model.model_id, fee, enabled=not args.external_node):
        request_id = send()
        assigned = assigned_nodes(coordinator, request_id)
        print(f"{call}: request {request_id}, assigned to {assigned}")
        info = wait_settled(coordinator, request_id, timeout=args.timeout)
    return request_id, info
