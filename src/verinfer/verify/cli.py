"""`verinfer proof verify REQUEST_ID`: re-check a zk-mode answer's proof locally.

From the coordinator's InferenceFulfilled event of the request to its transaction, whose
calldata (decoded with the contract's ABI) must be a ``fulfilZk``; the public instances are
rebuilt from its input and output exactly as the contract builds them, the circuit's
artifacts come from the store by the registry's ``artifacts_cid`` (checked against the
registered ``vk_hash`` and ``settings_hash``), and EZKL verifies the proof.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from eth_utils.crypto import keccak
from hexbytes import HexBytes

from verinfer.chain.client import Chain
from verinfer.chain.connect import connect, deployed_address
from verinfer.chain.deployments import AddressBook
from verinfer.chain.inference import CoordinatorClient, InferenceMode, RequestStatus
from verinfer.cli_common import JsonOption, RpcUrlOption, console, emit_json, out
from verinfer.errors import ChainError, ConfigError, ProofError
from verinfer.models.registry import RegistryClient
from verinfer.store import open_store
from verinfer.verify.backend import Proof
from verinfer.verify.zk import EzklBackend, ZkOptions
from verinfer.verify.zk_artifacts import instances_of, load_artifacts

app = typer.Typer(help="Check zk proofs of delivered answers.", no_args_is_help=True)


@dataclass(frozen=True)
class ZkFulfilment:
    """What a request's successful ``fulfilZk`` transaction carried."""

    request_id: int
    model_id: int
    tx: str
    node: str
    input: bytes
    output: bytes
    proof: bytes


def find_fulfilment(chain: Chain, request_id: int) -> ZkFulfilment:
    """The request's ``fulfilZk`` call; ProofError when it was not answered with a proof."""
    coordinator = CoordinatorClient(chain, deployed_address(chain, "InferenceCoordinator"))
    info = coordinator.get_request(request_id)
    if info.status == RequestStatus.NONE:
        raise ChainError(f"request {request_id} does not exist", hint="check the request id")
    try:
        from_block = AddressBook.load(chain.chain_id).block
    except ConfigError:  # no address book (addresses from elsewhere): scan from genesis
        from_block = 0
    logs = coordinator.contract.events.InferenceFulfilled().get_logs(
        from_block=from_block, argument_filters={"requestId": request_id}
    )
    mode = InferenceMode(info.mode).name.lower() if info.mode in set(InferenceMode) else info.mode
    if not logs:
        raise ProofError(
            f"request {request_id} has no zk fulfilment (mode {mode}, {info.status.name.lower()})",
            hint="only requests answered in mode zk carry a proof",
        )
    tx_hash = HexBytes(logs[0]["transactionHash"])
    tx = chain.w3.eth.get_transaction(tx_hash)
    try:
        fn, args = coordinator.contract.decode_function_input(bytes(tx["input"]))
        name = fn.fn_name
    except ValueError:
        name, args = "", {}
    if name != "fulfilZk" or int(args["requestId"]) != request_id:
        raise ProofError(
            f"request {request_id} has no zk fulfilment: it was delivered by "
            f"{name or 'another call'} (mode {mode}), without a proof",
            hint="only requests answered in mode zk carry a proof",
        )
    output = bytes(args["output"])
    if keccak(output) != bytes(logs[0]["args"]["outputHash"]):
        raise ProofError(f"the fulfilZk calldata of request {request_id} is not what was delivered")
    return ZkFulfilment(
        request_id=request_id, model_id=info.model_id, tx=tx_hash.to_0x_hex(),
        node=str(tx["from"]), input=bytes(args["input"]), output=output,
        proof=bytes(args["proof"]),
    )  # fmt: skip


def verify_request(
    chain: Chain, request_id: int, backend: EzklBackend
) -> tuple[bool, dict[str, Any]]:
    """(valid, details) for the proof delivered with ``request_id``."""
    found = find_fulfilment(chain, request_id)
    registry = RegistryClient(chain, deployed_address(chain, "ModelRegistry"))
    circuit = registry.get(found.model_id).zk
    artifacts = load_artifacts(backend.store, circuit.artifacts_cid)
    if (artifacts.vk_hash, artifacts.settings_hash) != (circuit.vk_hash, circuit.settings_hash):
        raise ProofError(
            f"the artifacts at {circuit.artifacts_cid} are not the registered circuit's "
            "(vk or settings hash differs)"
        )
    instances = instances_of(artifacts, found.input, found.output)
    if len(instances) != artifacts.n_instances:
        return False, _details(found, circuit.verifier, "instance count differs from the circuit")
    valid = backend.verify(artifacts, Proof(found.proof, instances, calldata=b""))
    return valid, _details(found, circuit.verifier, None)


def _details(found: ZkFulfilment, verifier: str, reason: str | None) -> dict[str, Any]:
    return {
        "request_id": found.request_id, "model_id": found.model_id, "tx": found.tx,
        "node": found.node, "verifier": verifier, "proof_bytes": len(found.proof),
        "reason": reason,
    }  # fmt: skip


@app.command("verify")
def verify(
    request_id: Annotated[int, typer.Argument(help="Request id answered in mode zk")],
    trusted_srs: Annotated[
        Path | None,
        typer.Option("--trusted-srs", help="The SRS file the circuit's keys were made with"),
    ] = None,
    rpc_url: RpcUrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Re-check the zk proof a request was answered with; exit 0 only if it is valid."""
    chain = connect(rpc_url)
    backend = EzklBackend(open_store(), ZkOptions(trusted_srs=trusted_srs))
    with console.status(f"verifying the proof of request {request_id}..."):
        valid, details = verify_request(chain, request_id, backend)
    details["valid"] = valid
    if json_out:
        emit_json(details)
    elif valid:
        out.print(
            f"[green]valid[/]: request {request_id}'s output is proved for model "
            f"{details['model_id']} (tx {details['tx']})"
        )
    else:
        out.print(f"[red]INVALID[/]: request {request_id}'s proof does not verify")
    if not valid:
        raise typer.Exit(1)


__all__ = ["ZkFulfilment", "app", "find_fulfilment", "verify_request"]
