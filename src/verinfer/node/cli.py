"""`verinfer node ...`: run a node, and manage its registration, stake and served models.

Every command takes ``--config node.toml`` (the daemon's file: RPC, key source, addresses),
or, for the one-off commands, the usual ``--rpc-url`` / ``--keystore`` resolution.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
from rich.table import Table

from verinfer.chain.client import Chain
from verinfer.chain.connect import connect, deployed_address
from verinfer.chain.inference import CoordinatorClient, NodeRegistryClient
from verinfer.chain.token import Token, format_units, parse_units
from verinfer.cli_common import JsonOption, KeystoreOption, RpcUrlOption, console, emit_json, out
from verinfer.errors import ConfigError
from verinfer.models.registry import Mode
from verinfer.node.config import NodeConfig, load_config
from verinfer.node.jobs import JobLog

app = typer.Typer(help="Run an inference node and manage its stake.", no_args_is_help=True)

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="The node's TOML config (see docs/node.md)")
]


class _Node:
    """The node's chain, NodeRegistry and payment token, from --config or the defaults."""

    def __init__(self, config_path: Path | None, rpc_url: str | None, keystore: Path | None):
        self.config: NodeConfig | None = load_config(config_path) if config_path else None
        if self.config is not None:
            self.chain = Chain(self.config.rpc_url, self.config.key.load())
        else:
            self.chain = connect(rpc_url, keystore)
        registry = (self.config and self.config.node_registry) or deployed_address(
            self.chain, "NodeRegistry"
        )
        self.registry = NodeRegistryClient(self.chain, registry)
        self.token = Token(self.chain, deployed_address(self.chain, "PaymentToken"))

    def coordinator(self) -> CoordinatorClient:
        address = (self.config and self.config.coordinator) or deployed_address(
            self.chain, "InferenceCoordinator"
        )
        return CoordinatorClient(self.chain, address)

    def amount(self, text: str, what: str = "amount") -> int:
        return parse_units(text, self.token.decimals(), what=what)

    def fmt(self, units: int) -> str:
        return f"{format_units(units, self.token.decimals())} {self.token.symbol()}"


def _tx(receipt: Any) -> str:
    return str(receipt["transactionHash"].to_0x_hex())


def _configure_daemon_logging(verbose: bool) -> None:
    """Key/value log lines on stderr, one per event, INFO and up (DEBUG with --verbose)."""
    level = logging.DEBUG if verbose else logging.INFO
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.KeyValueRenderer(
                key_order=["timestamp", "level", "event"], drop_missing=True
            ),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
    )


@app.command("start")
def start(
    config: Annotated[Path, typer.Option("--config", "-c", help="The node's TOML config")],
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logs")] = False,
) -> None:
    """Run the node daemon until SIGTERM or Ctrl-C (both stop it gracefully)."""
    from verinfer.node.service import NodeService

    _configure_daemon_logging(verbose)
    NodeService(load_config(config)).serve_forever()


@app.command("register")
def register(
    config: ConfigOption = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Register the signing account as a node (stake and serve afterwards)."""
    node = _Node(config, rpc_url, keystore)
    receipt = node.registry.register()
    if json_out:
        emit_json({"node": node.chain.address, "tx": _tx(receipt)})
        return
    console.print(f"[green]registered[/] node {node.chain.address} (tx {_tx(receipt)})")
    minimum = format_units(node.registry.min_stake(), node.token.decimals())
    console.print(f"next: `verinfer node stake {minimum}`")


@app.command("stake")
def stake(
    amount: Annotated[str, typer.Argument(help="Tokens to add to the stake, e.g. 100")],
    config: ConfigOption = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Approve and stake AMOUNT tokens."""
    node = _Node(config, rpc_url, keystore)
    units = node.amount(amount)
    receipt = node.registry.stake(units, node.token)
    info = node.registry.get_node()
    if json_out:
        emit_json({"node": info.address, "staked": units, "stake": info.stake, "tx": _tx(receipt)})
        return
    console.print(f"staked {node.fmt(units)}; stake now {node.fmt(info.stake)} (tx {_tx(receipt)})")


@app.command("unstake")
def unstake(
    amount: Annotated[str, typer.Argument(help="Tokens to start unbonding")],
    config: ConfigOption = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Start unbonding AMOUNT tokens (withdraw them with `node withdraw` after the delay)."""
    node = _Node(config, rpc_url, keystore)
    units = node.amount(amount)
    receipt = node.registry.request_unstake(units)
    info = node.registry.get_node()
    if json_out:
        emit_json(
            {"node": info.address, "unbonding": info.unbonding,
             "ready_at": info.unbonding_ready_at, "tx": _tx(receipt)}
        )  # fmt: skip
        return
    console.print(
        f"unbonding {node.fmt(info.unbonding)}, withdrawable at unix time "
        f"{info.unbonding_ready_at} (tx {_tx(receipt)})"
    )


@app.command("withdraw")
def withdraw(
    config: ConfigOption = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Withdraw unbonded stake whose delay has passed (earnings: `node withdraw-earnings`)."""
    node = _Node(config, rpc_url, keystore)
    receipt = node.registry.withdraw()
    if json_out:
        emit_json({"node": node.chain.address, "tx": _tx(receipt)})
        return
    console.print(f"withdrawn (tx {_tx(receipt)})")


@app.command("withdraw-earnings")
def withdraw_earnings(
    config: ConfigOption = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Pull the node's earnings (fees, its share of model prices) from the coordinator."""
    node = _Node(config, rpc_url, keystore)
    coordinator = node.coordinator()
    amount = coordinator.balance_of(node.chain.address)
    receipt = coordinator.withdraw()  # nothing owed: VerinferNothingToWithdraw, a clean error
    if json_out:
        emit_json({"node": node.chain.address, "withdrawn": amount, "tx": _tx(receipt)})
        return
    console.print(f"withdrew {node.fmt(amount)} of earnings (tx {_tx(receipt)})")


@app.command("serve")
def serve(
    model_id: Annotated[int, typer.Argument(help="Model id to serve")],
    modes: Annotated[
        str, typer.Option("--modes", help="Comma-separated: none, consensus, optimistic, zk")
    ] = "none",
    fee: Annotated[str, typer.Option("--fee", help="Fee per request in tokens")] = "0",
    stop_serving: Annotated[bool, typer.Option("--stop", help="Stop serving the model")] = False,
    config: ConfigOption = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Publish the modes and fee this node serves MODEL_ID with (on-chain)."""
    mask = 0 if stop_serving else int(Mode.parse(modes))
    if mask & ~int(Mode.NONE | Mode.CONSENSUS | Mode.OPTIMISTIC | Mode.ZK):
        raise ConfigError(
            f"nodes serve modes none, consensus, optimistic and zk, not {modes!r}",
            hint="use --modes none,consensus,optimistic,zk",
        )
    node = _Node(config, rpc_url, keystore)
    units = node.amount(fee, "fee")
    receipt = node.registry.set_service(model_id, mask, units)
    if json_out:
        emit_json(
            {"node": node.chain.address, "model_id": model_id, "modes": Mode(mask).to_names(),
             "fee": units, "tx": _tx(receipt)}
        )  # fmt: skip
        return
    if mask == 0:
        console.print(f"stopped serving model {model_id} (tx {_tx(receipt)})")
    else:
        names = ",".join(Mode(mask).to_names())
        console.print(
            f"serving model {model_id} in {names} for {node.fmt(units)} (tx {_tx(receipt)})"
        )


@app.command("status")
def status(
    config: ConfigOption = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """The node's stake and services on-chain and, with --config, its job log."""
    node = _Node(config, rpc_url, keystore)
    info = node.registry.get_node()
    data: dict[str, Any] = {
        "node": info.address,
        "registered": info.registered,
        "stake": info.stake,
        "unbonding": info.unbonding,
        "unbonding_ready_at": info.unbonding_ready_at,
        "min_stake": node.registry.min_stake(),
        "earnings": node.coordinator().balance_of(info.address),
    }
    if node.config is not None:
        services = {}
        for served in node.config.models:
            s = node.registry.get_service(served.id)
            services[str(served.id)] = {"modes": Mode(s.modes).to_names(), "fee": s.fee}
        data["services"] = services
        db = node.config.data_dir / "jobs.sqlite3"
        if db.exists():
            jobs = JobLog(db)
            head = node.chain.w3.eth.block_number
            cursor = jobs.cursor()
            data.update(
                head=head, cursor=cursor, lag=head - cursor if cursor is not None else None,
                jobs=jobs.counts(), counters=jobs.counters(),
            )  # fmt: skip
            jobs.close()
    if json_out:
        emit_json(data)
        return
    table = Table(show_header=False, box=None)
    for key, value in data.items():
        if key in ("stake", "unbonding", "min_stake", "earnings"):
            value = node.fmt(int(value))
        table.add_row(f"[bold]{key}[/]", str(value))
    out.print(table)
