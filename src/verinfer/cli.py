"""The `verinfer` command: one Typer app, sub-apps per domain, clean one-line errors."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from verinfer import __version__
from verinfer.chain.cli import deploy, devnet_app, token_app
from verinfer.cli_common import JsonOption, VerinferGroup, configure_logging, console, emit_json
from verinfer.client_cli import app as request_app
from verinfer.gateway.cli import facilitator_app, gateway_app
from verinfer.gateway.receipt_cli import receipt_app
from verinfer.models.cli import app as model_app
from verinfer.node.cli import app as node_app
from verinfer.optimistic.cli import claim_app, dispute_app, watch
from verinfer.runtime.cli import app as runtime_app
from verinfer.store.cli import app as store_app
from verinfer.verify.cli import app as proof_app

app = typer.Typer(
    cls=VerinferGroup,
    help="verinfer: verifiable, payable AI inference on EVM chains.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(devnet_app, name="devnet")
app.add_typer(token_app, name="token")
app.add_typer(store_app, name="store")
app.add_typer(model_app, name="model")
app.add_typer(runtime_app, name="runtime")
app.add_typer(node_app, name="node")
app.add_typer(request_app, name="request")
app.add_typer(proof_app, name="proof")
app.add_typer(claim_app, name="claim")
app.add_typer(dispute_app, name="dispute")
app.command("watch")(watch)
app.add_typer(gateway_app, name="gateway")
app.add_typer(facilitator_app, name="facilitator")
app.add_typer(receipt_app, name="receipt")
app.command("deploy")(deploy)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log details to stderr")] = False,
) -> None:
    configure_logging(verbose)


@app.command("version")
def version() -> None:
    """Print verinfer's version."""
    typer.echo(__version__)


@app.command("demo")
def demo(json_out: JsonOption = False) -> None:
    """Start a devnet, deploy the contracts and register the example digits model."""
    from verinfer.demo import run_demo

    with console.status("setting up the demo (devnet, contracts, model)..."):
        result = run_demo()
    if json_out:
        emit_json(result.__dict__)
        return
    devnet_state = "started" if result.started_devnet else "already running"
    console.print(f"[green]devnet[/]    {result.rpc_url} ({devnet_state})")
    console.print(f"[green]contracts[/] {'deployed' if result.deployed else 'already deployed'}")
    state = "already registered" if result.reused_model else "registered"
    console.print(
        f"[green]model[/]     digits MLP {state} as model {result.model_id}, cid {result.cid}"
    )
    console.print(f"[green]node[/]      {result.node} staked, serving model {result.model_id}")
    verdict = "as computed locally" if result.digit == result.expected_digit else "MISMATCH"
    console.print(
        f"[green]result[/]    contract {result.consumer} asked for request {result.request_id} "
        f"and received digit [bold]{result.digit}[/] ({verdict})"
    )
    steps = [
        (f"verinfer model show {result.model_id}", "the model as recorded on-chain"),
        (f"verinfer request status {result.request_id}", "the request the contract made"),
        ("verinfer model list", "every registered model"),
        (f"verinfer store get {result.cid} -o model.onnx", "the file, checked against its CID"),
        ("verinfer devnet stop", "stop the local chain (its state is kept)"),
    ]
    console.print("\nLook next (after `source .venv/bin/activate` in a checkout):")
    for command, why in steps:
        console.print(f"  {command}\n      [dim]# {why}[/]")
    console.print("Run your own node: docs/node.md; write a consumer contract: docs/solidity.md")
    console.print("Guide: docs/quickstart.md")


def main() -> None:
    """Console-script entry: unexpected bugs become one line too (VERINFER_DEBUG=1 re-raises)."""
    import os

    try:
        app()
    except Exception as exc:  # noqa: BLE001 - last resort, so users never see a traceback
        if os.environ.get("VERINFER_DEBUG"):
            raise
        typer.echo(f"error: unexpected {type(exc).__name__}: {exc}", err=True)
        typer.echo("  hint: rerun with VERINFER_DEBUG=1 for the traceback, and report it", err=True)
        sys.exit(1)
