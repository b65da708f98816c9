"""`verinfer request ...`: ask the network for an inference, and look a request up.

    verinfer request MODEL_ID --input x.npy [--mode none|consensus|optimistic|zk] [--early]
                     [--wait] [--json]
    verinfer request status REQUEST_ID [--json]

``request`` is a group whose default command is ``submit``: anything that is not a
sub-command name (``submit``, ``status``) is handed to ``submit``, so
``verinfer request 1 --input x.npy`` and ``verinfer request submit 1 --input x.npy`` are the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from verinfer.chain.token import parse_units
from verinfer.cli_common import JsonOption, KeystoreOption, RpcUrlOption, console, emit_json, out
from verinfer.client import InferenceClient, RequestResult
from verinfer.runtime.cli import load_npy


class _DefaultToSubmit(typer.core.TyperGroup):
    """A group that treats an unknown first word as the argument of ``submit``."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["submit", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_DefaultToSubmit,
    help="Request inferences (`verinfer request MODEL_ID --input x.npy`) and check them.",
    no_args_is_help=True,
)


def _show(result: RequestResult, client: InferenceClient) -> None:
    table = Table(show_header=False, box=None)
    table.add_row("[bold]request[/]", str(result.request_id))
    table.add_row("[bold]model[/]", str(result.model_id))
    table.add_row("[bold]mode[/]", result.mode + (" (early delivery)" if result.early else ""))
    table.add_row("[bold]status[/]", result.status)
    table.add_row("[bold]fee[/]", f"{client.token.format(result.fee)} {client.token.symbol()}")
    if result.tx:
        table.add_row("[bold]tx[/]", result.tx)
    if result.assigned:
        table.add_row("[bold]assigned[/]", ", ".join(result.assigned))
    if result.refunded is not None:
        table.add_row("[bold]refunded[/]", client.token.format(result.refunded))
    if result.invalid_input:
        table.add_row("[bold]output[/]", "0x (the nodes could not run this input for the model)")
    if result.outputs is not None:
        for i, o in enumerate(result.outputs):
            flat = o.reshape(-1)
            shown = ", ".join(f"{v:.6g}" for v in flat[:10]) + (" ..." if flat.size > 10 else "")
            table.add_row(f"[bold]output {i}[/]", f"{list(o.shape)} [{shown}]")
            if flat.size > 1:
                table.add_row("[bold]argmax[/]", str(int(flat.argmax())))
    out.print(table)


@app.command("submit")
def submit(
    model_id: Annotated[int, typer.Argument(help="Model id")],
    input_path: Annotated[Path, typer.Option("--input", help=".npy input (single-input models)")],
    mode: Annotated[str, typer.Option("--mode", help="none, consensus, optimistic or zk")] = "none",
    redundancy: Annotated[
        int | None, typer.Option("--redundancy", help="Nodes for consensus (default 3)")
    ] = None,
    max_fee: Annotated[
        str | None, typer.Option("--max-fee", help="Most to pay, in tokens (default: quote)")
    ] = None,
    deadline: Annotated[int, typer.Option("--deadline", help="Seconds until refund")] = 600,
    early: Annotated[
        bool,
        typer.Option(
            "--early",
            help="Optimistic only: the requester contract also gets the claimed output at the "
            "claim, provisionally, and a correction callback if a dispute overturns it",
        ),
    ] = False,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the result")] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait")] = 120.0,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Pay for a request and send it.

    The input is quantized with the model's program, or in mode zk at the circuit's input
    scale (sent inline: the proof's public input is exactly these values)."""
    array = load_npy(input_path, "input")
    client = InferenceClient.connect(rpc_url, keystore)
    units = parse_units(max_fee, client.token.decimals(), what="max fee") if max_fee else None
    with console.status("sending the request..."):
        result = client.request(
            model_id, array, mode, redundancy=redundancy, max_fee=units, deadline_s=deadline,
            early=early,
        )  # fmt: skip
    if wait:
        with console.status(f"waiting for request {result.request_id}..."):
            settled = client.wait(result.request_id, timeout=timeout)
        settled.tx, settled.assigned, settled.fee = result.tx, result.assigned, result.fee
        result = settled
    if json_out:
        emit_json(result.to_json())
        return
    _show(result, client)
    if not wait:
        console.print(f"next: `verinfer request status {result.request_id}`")


@app.command("status")
def status(
    request_id: Annotated[int, typer.Argument(help="Request id")],
    rpc_url: RpcUrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """A request's status and, once fulfilled, its output."""
    client = InferenceClient.connect(rpc_url)
    result = client.status(request_id)
    if json_out:
        emit_json(result.to_json())
        return
    _show(result, client)
