"""`verinfer receipt verify FILE`: check a gateway receipt's signature and what it signs.

FILE is a gateway response (``{"receipt": ..., "input": "0x..", "output": "0x..", ...}``) as
saved by a client, or a signed receipt alone; ``-`` reads standard input. Offline, the check
is the EIP-712 signature (by ``--node`` when given) and, when the response carries them, the
input and output bytes against their signed hashes. ``--rerun`` also runs the input through
the model with the deterministic runtime (registry and store of ``--rpc-url``) and requires
the very output signed: for mode none, that is the whole verification.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from verinfer.cli_common import JsonOption, RpcUrlOption, console, emit_json, out
from verinfer.gateway.receipts import ReceiptError, SignedReceipt, digest, verify_receipt

receipt_app = typer.Typer(help="Check receipts of paid inference.", no_args_is_help=True)


def _read(path: str) -> Any:
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as exc:
        raise ReceiptError(f"cannot read {path}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReceiptError(f"{path} is not JSON: {exc}") from exc


def _hex_field(document: dict[str, Any], name: str) -> bytes | None:
    value = document.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ReceiptError(f"{name} must be 0x-prefixed hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError as exc:
        raise ReceiptError(f"{name} is not hex: {exc}") from exc


def _rerun(rpc_url: str | None, model_id: int, input_bytes: bytes) -> bytes:
    from verinfer.chain.connect import connect, deployed_address
    from verinfer.models.registry import RegistryClient
    from verinfer.node.executor import Executor
    from verinfer.store import open_store

    chain = connect(rpc_url)
    registry = RegistryClient(chain, deployed_address(chain, "ModelRegistry"))
    return Executor(registry, open_store()).run(model_id, input_bytes)


@receipt_app.command("verify")
def verify(
    file: Annotated[
        str, typer.Argument(help="Gateway response or signed receipt (JSON; - for stdin)")
    ],
    node: Annotated[
        str | None, typer.Option("--node", help="Require the receipt be signed by this address")
    ] = None,
    rerun: Annotated[
        bool, typer.Option("--rerun", help="Re-execute the input and require the signed output")
    ] = False,
    rpc_url: RpcUrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Exit 0 when the receipt holds, 1 (with the reason) when it does not."""
    document = _read(file)
    if not isinstance(document, dict):
        raise ReceiptError(f"{file} holds no receipt (a JSON object is expected)")
    signed = SignedReceipt.from_json(document.get("receipt", document))
    input_bytes = _hex_field(document, "input")
    output = _hex_field(document, "output")
    receipt = verify_receipt(signed, node=node, input=input_bytes, output=output)
    checked = ["signature"] + (["input"] if input_bytes is not None else [])
    checked += ["output"] if output is not None else []
    if rerun:
        if input_bytes is None:
            raise ReceiptError("--rerun needs the input: pass the gateway's whole response")
        again = _rerun(rpc_url, receipt.model_id, input_bytes)
        if digest(again) != receipt.output_hash.lower():
            raise ReceiptError(
                "re-executed, the model gives another output than the receipt signs",
                hint="the node answered a wrong result: keep this receipt as evidence",
            )
        checked.append("rerun")
    result = {"valid": True, "signer": signed.signer, "checked": checked, **vars(receipt)}
    if json_out:
        emit_json(result)
        return
    out.print(f"valid receipt signed by {signed.signer}: checked {', '.join(checked)}")
    console.print(
        f"model {receipt.model_id}, mode {receipt.mode}, price {receipt.price}, "
        f"payer {receipt.payer}, request {receipt.request_id or '-'}"
    )
