"""`verinfer claim ...`, `verinfer dispute ...` and `verinfer watch`: optimistic claims from the
command line. Every command takes a request id (the claim's id is shown with it).

    verinfer claim show REQUEST_ID [--json]
    verinfer dispute status REQUEST_ID [--json]
    verinfer dispute start REQUEST_ID [--timeout S]      re-execute, challenge, play to the end
    verinfer watch --models 1,2 [--max-at-risk 0.1] [--no-challenge]
"""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.table import Table

from verinfer.chain.client import Chain
from verinfer.chain.connect import connect, deployed_address
from verinfer.chain.deployments import AddressBook
from verinfer.chain.inference import CoordinatorClient
from verinfer.chain.token import format_units, parse_units
from verinfer.cli_common import JsonOption, KeystoreOption, RpcUrlOption, console, emit_json, out
from verinfer.errors import ConfigError, VerinferError
from verinfer.models.registry import RegistryClient
from verinfer.node.executor import Executor
from verinfer.node.watchtower import Watchtower
from verinfer.optimistic.game import PHASES
from verinfer.store import open_store

STATUSES = ("None", "Open", "Disputed", "Finalized", "ClaimerWon", "ChallengerWon", "Forced")

claim_app = typer.Typer(help="Optimistic claims: what a node claimed for a request.")
dispute_app = typer.Typer(help="Dispute optimistic claims, and follow disputes.")


class DisputeLostError(VerinferError):
    """The dispute we started ended with the claimer winning."""


@dataclass
class _Context:
    chain: Chain
    coordinator: CoordinatorClient
    game: Any
    deployed_at: int  # the suite's deployment block: where event searches start

    @classmethod
    def connect(cls, rpc_url: str | None, keystore: Any = None) -> _Context:
        chain = connect(rpc_url, keystore)
        coordinator = CoordinatorClient(chain, deployed_address(chain, "InferenceCoordinator"))
        game_address = coordinator.dispute_game()
        if int(game_address, 16) == 0:
            raise ConfigError("this deployment has no DisputeGame: mode optimistic is off")
        game = chain.contract("DisputeGame", game_address)
        return cls(chain, coordinator, game, AddressBook.load(chain.chain_id).block)

    def claim_id(self, request_id: int) -> int:
        claim_id = self.coordinator.claim_of(request_id)
        if claim_id == 0:
            raise VerinferError(
                f"request {request_id} has no optimistic claim",
                hint=f"`verinfer request status {request_id}` shows its mode and status",
            )
        return claim_id

    def tower(
        self, models: set[int], max_at_risk: int, *, challenge: bool, start: int
    ) -> Watchtower:
        registry = RegistryClient(self.chain, deployed_address(self.chain, "ModelRegistry"))
        executor = Executor(registry, open_store())
        return Watchtower(
            self.chain, self.coordinator, executor, models=models, max_at_risk=max_at_risk,
            challenge=challenge, start_block=start,
        )  # fmt: skip


def claim_info(ctx: _Context, request_id: int) -> dict[str, Any]:
    """The claim of ``request_id`` and its dispute, as plain data."""
    claim_id = ctx.claim_id(request_id)
    c = ctx.game.functions.claims(claim_id).call()
    window = int(ctx.game.functions.window().call())
    _, mover, deadline = ctx.game.functions.turn(claim_id).call()
    d = ctx.game.functions.disputes(claim_id).call()
    info: dict[str, Any] = {
        "request_id": request_id,
        "claim_id": claim_id,
        "claimer": c[0],
        "status": STATUSES[int(c[2])] if int(c[2]) < len(STATUSES) else str(c[2]),
        "opened_at": int(c[1]),
        "window_ends": int(c[1]) + window,
        "bond_wei": int(c[5]),
        "trace_root": "0x" + bytes(c[6]).hex(),
        "output_hash": "0x" + bytes(c[10]).hex(),
        "now": int(ctx.chain.w3.eth.get_block("latest")["timestamp"]),
    }
    if int(d[0], 16) != 0:
        info["dispute"] = {
            "challenger": d[0],
            "phase": PHASES[int(d[1])],
            "waiting_for": mover if int(mover, 16) else None,
            "deadline": int(deadline) or None,
            "step": int(d[3]),
            "level": int(d[4]),
            "index": int(d[5]),
        }
        resolved = ctx.game.events.DisputeResolved().get_logs(
            argument_filters={"claimId": claim_id}, from_block=ctx.deployed_at
        )
        if resolved:
            args = resolved[-1]["args"]
            reason = ("one step", "output binding", "timeout")[int(args["reason"])]
            info["dispute"]["winner"] = args["winner"]
            info["dispute"]["claimer_won"] = bool(args["claimerWon"])
            info["dispute"]["reason"] = reason
    return info


def _print(info: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    for key, value in info.items():
        if key == "dispute":
            continue
        if key == "bond_wei":
            key, value = "bond", f"{format_units(value, 18)} ETH"
        table.add_row(f"[bold]{key.replace('_', ' ')}[/]", str(value))
    for key, value in info.get("dispute", {}).items():
        table.add_row(f"[bold]dispute {key.replace('_', ' ')}[/]", str(value))
    out.print(table)


RequestArg = Annotated[int, typer.Argument(help="Request id (its claim is looked up)")]


@claim_app.command("show")
def show(
    request_id: RequestArg, rpc_url: RpcUrlOption = None, json_out: JsonOption = False
) -> None:
    """The claim a node made for an optimistic request: status, window, bond, trace root."""
    info = claim_info(_Context.connect(rpc_url), request_id)
    emit_json(info) if json_out else _print(info)


@dispute_app.command("status")
def status(
    request_id: RequestArg, rpc_url: RpcUrlOption = None, json_out: JsonOption = False
) -> None:
    """Where the dispute of a request's claim stands: phase, whose move, deadline, outcome."""
    info = claim_info(_Context.connect(rpc_url), request_id)
    if "dispute" not in info:
        console.print(f"claim {info['claim_id']} of request {request_id} has no dispute")
    emit_json(info) if json_out else _print(info)


@dispute_app.command("start")
def start(
    request_id: RequestArg,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to play for")] = 600.0,
    poll: Annotated[float, typer.Option("--poll-interval", help="Seconds between looks")] = 0.5,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Re-execute a request, challenge its claim if it is wrong (with the game's bond), and
    play every challenger move until the dispute ends. Refuses a claim that is correct."""
    ctx = _Context.connect(rpc_url, keystore)
    claim_id = ctx.claim_id(request_id)
    claimer = str(ctx.game.functions.claims(claim_id).call()[0])
    bond = int(ctx.game.functions.challengeBond().call())
    tower = ctx.tower(set(), bond, challenge=True, start=ctx.chain.w3.eth.block_number + 1)
    tower.follow(request_id, claim_id, claimer, force=True)
    watch = tower.claims.get(claim_id)
    if watch is None or watch.own:
        raise VerinferError(f"claim {claim_id} is not another node's claim we can follow")
    if not tower.verdict(claim_id):
        raise VerinferError(
            f"claim {claim_id} matches this machine's re-execution of request {request_id}: "
            "there is nothing to dispute",
        )
    end = time.monotonic() + timeout
    with console.status(f"disputing claim {claim_id}..."):
        while claim_id in tower.claims and time.monotonic() < end:
            if not tower.poll():
                time.sleep(poll)
    info = claim_info(ctx, request_id)
    if json_out:
        emit_json(info)
    else:
        _print(info)
    if claim_id in tower.claims:
        raise VerinferError(
            f"the dispute of claim {claim_id} is still running after {timeout:.0f} s",
            hint=f"run `verinfer dispute start {request_id}` again: it takes the dispute up",
        )
    if tower.stats["lost"]:
        raise DisputeLostError(f"the claimer of claim {claim_id} won the dispute")


def watch(
    models: Annotated[str, typer.Option("--models", help="Model ids to watch, e.g. 1,2")],
    max_at_risk: Annotated[
        str, typer.Option("--max-at-risk", help="Most ETH in challenge bonds at once")
    ] = "0.1",
    challenge: Annotated[
        bool, typer.Option("--challenge/--no-challenge", help="Dispute wrong claims")
    ] = True,
    from_block: Annotated[
        int | None, typer.Option("--from-block", help="First block to scan (default: head)")
    ] = None,
    poll: Annotated[float, typer.Option("--poll-interval", help="Seconds between looks")] = 0.5,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
) -> None:
    """Watch optimistic claims: re-execute other nodes' claims on MODELS, dispute wrong ones,
    and defend this account's own claims, until SIGINT/SIGTERM. Logs go to stderr."""
    try:
        ids = {int(m) for m in models.split(",") if m.strip()}
    except ValueError as exc:
        raise ConfigError(f"--models: {models!r} is not a comma-separated list of ids") from exc
    if not ids or min(ids) <= 0:
        raise ConfigError("--models: give at least one model id (> 0)")
    budget = parse_units(max_at_risk, 18, what="--max-at-risk")
    ctx = _Context.connect(rpc_url, keystore)
    head = int(ctx.chain.w3.eth.block_number)
    tower = ctx.tower(
        ids, budget, challenge=challenge, start=head if from_block is None else from_block
    )
    for model_id in ids:
        tower.executor.program(model_id)  # fail now, not at the first claim
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    console.print(
        f"watching models {sorted(ids)} from block {tower.cursor} as {ctx.chain.address} "
        f"(bonds at risk <= {max_at_risk} ETH{'' if challenge else ', no challenges'})"
    )
    while not stop.is_set():
        try:
            busy = tower.poll()
        except Exception as exc:  # noqa: BLE001 - the RPC may come back: log and carry on
            console.print(f"[yellow]warning[/] {type(exc).__name__}: {str(exc)[:300]}")
            busy = False
        if not busy:
            stop.wait(poll)
    console.print(f"stopped: {tower.stats}")
