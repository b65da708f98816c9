"""`verinfer gateway start` and `verinfer facilitator start`: the x402 servers, on loopback.

verinfer facilitator start [--port 8403]                     devnet: settles in TestUSD
verinfer gateway start --pay-to 0x... [--port 8402] [--node-fee 0.005]
                       [--facilitator-url http://127.0.0.1:8403]
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

from verinfer.chain.accounts import DEVNET_CHAIN_ID, PRIVATE_KEY_ENV, dev_account
from verinfer.chain.connect import connect
from verinfer.chain.deployments import AddressBook
from verinfer.chain.token import Token, parse_units
from verinfer.cli_common import JsonOption, KeystoreOption, RpcUrlOption, console, emit_json, out
from verinfer.errors import ConfigError
from verinfer.gateway.app import (
    DEFAULT_EMBEDDINGS_NAME,
    GatewayConfig,
    gateway_from_chain,
    royalty_ledger,
)
from verinfer.gateway.facilitator import create_facilitator_app, devnet_facilitator
from verinfer.gateway.royalties import RoyaltyPayer
from verinfer.gateway.serve import LOOPBACK, serve_forever
from verinfer.hexstr import is_address

gateway_app = typer.Typer(help="Sell inference per call over HTTP with x402.", no_args_is_help=True)
facilitator_app = typer.Typer(
    help="An x402 facilitator that verifies and settles payments (devnet).", no_args_is_help=True
)

FACILITATOR_DEV_ACCOUNT = 2

PortOption = Annotated[int, typer.Option("--port", min=1, max=65535, help="Port on 127.0.0.1")]


@facilitator_app.command("start")
def facilitator_start(
    port: PortOption = 8403, rpc_url: RpcUrlOption = None, keystore: KeystoreOption = None
) -> None:
    """Verify and settle x402 payments (EIP-3009 authorizations of the payment token) on this
    chain; the signing account pays the settlement gas (on the devnet, by default, anvil's dev
    account 2, so it never shares nonces with a gateway on account 0). Serves until
    interrupted."""
    chain = connect(rpc_url, keystore)
    if (
        keystore is None
        and not os.environ.get(PRIVATE_KEY_ENV)
        and chain.chain_id == DEVNET_CHAIN_ID
    ):
        # Not account 0, the gateway's default: one account, one nonce sequence, one sender.
        chain.account = dev_account(FACILITATOR_DEV_ACCOUNT)
    network = f"eip155:{chain.chain_id}"
    devnet = devnet_facilitator(chain.rpc_url, "0x" + bytes(chain.signer().key).hex(), network)
    console.print(
        f"facilitator for {network} on http://{LOOPBACK}:{port}, gas from {chain.address}"
    )
    serve_forever(create_facilitator_app(devnet), port=port)


@gateway_app.command("start")
def gateway_start(
    pay_to: Annotated[str, typer.Option("--pay-to", help="Address that receives payments")],
    port: PortOption = 8402,
    node_fee: Annotated[
        str, typer.Option("--node-fee", help="Added to each model's price, in tokens")
    ] = "0.005",
    facilitator_url: Annotated[
        str, typer.Option("--facilitator-url", help="The x402 facilitator to verify and settle")
    ] = f"http://{LOOPBACK}:8403",
    relay: Annotated[
        bool,
        typer.Option(
            "--relay/--no-relay",
            help="Also sell modes zk, optimistic and consensus as on-chain requests paid from "
            "this account",
        ),
    ] = True,
    embeddings_model: Annotated[
        int | None,
        typer.Option(
            "--embeddings-model", help="A registered MiniLM model to serve at /v1/embeddings"
        ),
    ] = None,
    embeddings_name: Annotated[
        str, typer.Option("--embeddings-name", help="The model name OpenAI clients ask for")
    ] = DEFAULT_EMBEDDINGS_NAME,
    royalty_interval: Annotated[
        float,
        typer.Option(
            "--royalty-interval", min=1, help="Seconds between royalty payouts to model owners"
        ),
    ] = 60.0,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
) -> None:
    """Serve the registered models: `GET /v1/models/{id}` (terms, free) and
    `POST /v1/models/{id}/infer[?mode=none|zk|optimistic|consensus]` (paid per call with x402;
    settled only for a delivered result). The account (`--keystore`) signs every receipt,
    pays the relayed on-chain requests, and pays model owners their royalty on the calls it
    computes itself (every `--royalty-interval` seconds; see `verinfer gateway royalties`).
    """
    if not is_address(pay_to):
        raise ConfigError(f"--pay-to: {pay_to!r} is not a 0x-prefixed 20-byte address")
    chain = connect(rpc_url, keystore)
    book = AddressBook.load(chain.chain_id)
    token = Token(chain, book.address("PaymentToken"))
    fee = parse_units(node_fee, token.decimals(), what="--node-fee")
    config = GatewayConfig(
        network=f"eip155:{chain.chain_id}", pay_to=pay_to, facilitator_url=facilitator_url
    )
    ledger = royalty_ledger(chain, book)
    app = gateway_from_chain(
        chain, book, config, node_fee=fee, relay=relay,
        embeddings_model=embeddings_model, embeddings_name=embeddings_name, royalties=ledger,
    )  # fmt: skip
    console.print(
        f"gateway on http://{LOOPBACK}:{port}, paid to {pay_to} via {facilitator_url}, "
        f"receipts signed by {chain.address}"
    )
    payer = RoyaltyPayer(ledger, interval=royalty_interval).start()
    try:
        serve_forever(app, port=port)
    finally:
        payer.stop()  # a last payout


@gateway_app.command("royalties")
def gateway_royalties(
    pay: Annotated[bool, typer.Option("--pay", help="Pay what is owed now")] = False,
    json_out: JsonOption = False,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
) -> None:
    """What this gateway account owes model owners for the calls it computed (mode none,
    embeddings): accrued, owed, paid, per owner. `--pay` transfers what is owed."""
    chain = connect(rpc_url, keystore)
    # the gateway may be running and paying: what it is sending is its own to recover
    ledger = royalty_ledger(chain, AddressBook.load(chain.chain_id), recover=False)
    paid = ledger.pay_out() if pay else {}
    balances = ledger.balances()
    if json_out:
        emit_json({"owners": balances, "paid_now": paid})
        return
    if not balances:
        console.print("no royalties accrued by this account")
    for owner, b in balances.items():
        out.print(
            f"{owner}: accrued {b['accrued']}, owed {b['owed']}, paid {b['paid']}"
            + (f", sending {b['sending']}" if b["sending"] else "")
            + (f" (paid now {paid[owner]})" if owner in paid else "")
        )
