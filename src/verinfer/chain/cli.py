"""`verinfer devnet ...` and `verinfer deploy`: the local chain and the contract suite."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer

from verinfer.chain.connect import connect, deployed_address
from verinfer.chain.deploy import deploy_suite
from verinfer.chain.deployments import AddressBook
from verinfer.chain.devnet import Devnet, DevnetInfo, rpc_chain_id
from verinfer.chain.token import Token
from verinfer.cli_common import JsonOption, KeystoreOption, RpcUrlOption, console, emit_json

devnet_app = typer.Typer(help="Run a local anvil devnet on 127.0.0.1.", no_args_is_help=True)

StateDirOption = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="Where the devnet keeps its state (default: ~/.verinfer/devnet)"
    ),
]


def _describe(info: DevnetInfo) -> dict[str, object]:
    return {
        "rpc_url": info.rpc_url,
        "chain_id": info.chain_id,
        "pid": info.pid,
        "state_dir": info.state_dir,
    }


@devnet_app.command("start")
def devnet_start(
    port: Annotated[int | None, typer.Option("--port", help="Port (default: a free one)")] = None,
    state_dir: StateDirOption = None,
    detach: Annotated[bool, typer.Option("--detach", help="Return once it is up")] = False,
    json_out: JsonOption = False,
) -> None:
    """Start anvil; its state survives `stop` and `start`."""
    devnet = Devnet(state_dir)
    info = devnet.start(port)
    if json_out:
        emit_json(_describe(info))
    else:
        console.print(
            f"[green]devnet running[/] at {info.rpc_url} (chain {info.chain_id}, pid {info.pid})"
        )
    if detach:
        return
    console.print("press Ctrl-C to stop")
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    try:
        while not stopping and devnet.info() is not None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    devnet.stop()
    console.print("devnet stopped; state saved")


@devnet_app.command("stop")
def devnet_stop(state_dir: StateDirOption = None, json_out: JsonOption = False) -> None:
    """Stop the devnet (its state is saved first)."""
    info = Devnet(state_dir).stop()
    if json_out:
        emit_json({"stopped": info is not None})
    elif info is None:
        console.print("no devnet was running")
    else:
        console.print(f"devnet at {info.rpc_url} stopped; state saved in {info.state_dir}")


@devnet_app.command("status")
def devnet_status(state_dir: StateDirOption = None, json_out: JsonOption = False) -> None:
    """Say whether the devnet runs, where, and at which block. Exit 1 when it does not run."""
    devnet = Devnet(state_dir)
    info = devnet.info()
    answering = info is not None and rpc_chain_id(info.rpc_url) == info.chain_id
    if json_out:
        emit_json({"running": answering, **(_describe(info) if info else {})})
    elif info is None:
        console.print("devnet: not running (start it with `verinfer devnet start --detach`)")
    else:
        state = "running" if answering else "not answering"
        console.print(f"devnet: {state} at {info.rpc_url} (chain {info.chain_id}, pid {info.pid})")
    if not answering:
        raise typer.Exit(1)


def deploy(
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    payment_token: Annotated[
        str | None,
        typer.Option("--payment-token", help="ERC-20 to be paid in (required off the devnet)"),
    ] = None,
    json_out: JsonOption = False,
) -> None:
    """Deploy the contract suite and record the addresses for later commands."""
    chain = connect(rpc_url, keystore)
    with console.status("deploying contracts..."):
        book = deploy_suite(chain, payment_token=payment_token)
    path = AddressBook.path_for(chain.chain_id)
    if json_out:
        emit_json(
            {"chain_id": book.chain_id, "contracts": book.contracts, "address_book": str(path)}
        )
        return
    for name, address in book.contracts.items():
        console.print(f"  {name:<14} {address}")
    console.print(f"[green]deployed[/] on chain {book.chain_id}; addresses saved in {path}")


token_app = typer.Typer(
    help="The payment token: balances and (devnet) faucet.", no_args_is_help=True
)


def _token(rpc_url: str | None, keystore: Path | None = None) -> tuple[Token, str]:
    chain = connect(rpc_url, keystore)
    return Token(chain, deployed_address(chain, "PaymentToken")), chain.address


@token_app.command("balance")
def token_balance(
    address: Annotated[str | None, typer.Argument(help="Account (default: your signer)")] = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show an account's payment-token balance."""
    token, me = _token(rpc_url, keystore)
    who = address or me
    units = token.balance_of(who)
    if json_out:
        emit_json({"address": who, "balance": units, "display": token.format(units)})
    else:
        console.print(f"{who}: {token.format(units)} {token.symbol()}")


@token_app.command("faucet")
def token_faucet(
    amount: Annotated[str, typer.Argument(help="Whole tokens, e.g. 100")] = "100",
    to: Annotated[str | None, typer.Option("--to", help="Recipient (default: your signer)")] = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Mint devnet TestUSD (TestUSD refuses on any other chain)."""
    token, me = _token(rpc_url, keystore)
    who = to or me
    units = token.parse(amount)
    receipt = token.faucet(who, units)
    tx = receipt["transactionHash"].to_0x_hex()
    if json_out:
        emit_json({"address": who, "minted": units, "tx": tx})
    else:
        console.print(f"minted {token.format(units)} {token.symbol()} to {who} (tx {tx})")
