"""`verinfer model ...`: register, inspect and manage models in the on-chain registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn
from rich.table import Table

from verinfer.chain.client import Chain
from verinfer.chain.connect import connect, deployed_address
from verinfer.chain.deployments import AddressBook
from verinfer.chain.token import Token, format_units, parse_units
from verinfer.cli_common import JsonOption, KeystoreOption, RpcUrlOption, console, emit_json, out
from verinfer.errors import ModelError
from verinfer.models.onnx_check import inspect_onnx
from verinfer.models.publish import draft_input, final_input, precheck, publish_zk, store_model
from verinfer.models.registry import ZERO_HASH, Mode, ModelRecord, RegistryClient
from verinfer.runtime import compile_model
from verinfer.runtime.cli import load_npy
from verinfer.store import open_store
from verinfer.verify.backend import ZkLimits, ZkModel
from verinfer.verify.zk import EzklBackend, VerifierChoice, ZkOptions

MaxMemoryOption = Annotated[
    float | None,
    typer.Option(
        "--max-memory-gb",
        envvar="VERINFER_ZK_MAX_MEMORY_GB",
        help="zk: refuse a circuit whose proving needs more memory (GiB)",
    ),
]
MaxProveOption = Annotated[
    float | None,
    typer.Option(
        "--max-prove-seconds",
        envvar="VERINFER_ZK_MAX_PROVE_SECONDS",
        help="zk: refuse a circuit whose proofs take longer (seconds)",
    ),
]

app = typer.Typer(help="Register and manage models in the on-chain registry.", no_args_is_help=True)


class _Registry:
    """The registry and the payment token of one chain, found through the address book."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self.registry = RegistryClient(chain, deployed_address(chain, "ModelRegistry"))
        self.token = Token(chain, deployed_address(chain, "PaymentToken"))
        self.decimals = self.token.decimals()
        self.symbol = self.token.symbol()

    def price_text(self, units: int) -> str:
        return f"{format_units(units, self.decimals)} {self.symbol}"

    def record_json(self, record: ModelRecord) -> dict[str, Any]:
        data = record.to_dict()
        data["price_display"] = self.price_text(record.price)
        deployed_at = AddressBook.load(self.chain.chain_id).block
        data["tx"] = self.registry.registration_tx(record.model_id, from_block=deployed_at)
        return data


@app.command("add")
def add(
    path: Annotated[Path, typer.Argument(help="The ONNX file to register")],
    name: Annotated[str, typer.Option("--name", help="Human-readable model name")],
    price: Annotated[str, typer.Option("--price", help="Price per inference in tokens")] = "0",
    royalty_bps: Annotated[
        int, typer.Option("--royalty-bps", help="Owner's share of each fee, 0-10000 bps")
    ] = 0,
    modes: Annotated[str, typer.Option("--modes", help=f"Allowed modes: {Mode.names()}")] = "none",
    parent: Annotated[int, typer.Option("--parent", help="Model this derives from")] = 0,
    license: Annotated[str, typer.Option("--license", help="SPDX id or URL")] = "",
    batch: Annotated[int, typer.Option("--batch", help="Bind a dynamic batch dim to N")] = 1,
    metadata_uri: Annotated[
        str | None, typer.Option("--metadata-uri", help="Model card URI (default: manifest)")
    ] = None,
    calibration: Annotated[
        Path | None,
        typer.Option("--calibration", help=".npy of sample inputs to choose fixed-point scales"),
    ] = None,
    max_memory_gb: MaxMemoryOption = None,
    max_prove_seconds: MaxProveOption = None,
    trusted_srs: Annotated[
        Path | None,
        typer.Option(
            "--trusted-srs",
            help="zk: a ceremony SRS file for the circuit's logrows (default: a development SRS)",
        ),
    ] = None,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Validate an ONNX file, store it by CID, and register it on-chain.

    With zk among --modes: estimate the circuit (refused over the limits), build it with EZKL
    (settings, compile, SRS, keys, verifier; one line per stage on stderr), deploy its
    verifier and register the model with the circuit.
    """
    with Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=True,
        disable=json_out or not console.is_terminal,
    ) as progress:
        step = progress.add_task("validating the ONNX file", total=None)
        spec = inspect_onnx(path, batch=batch)
        allowed = Mode.parse(modes)
        progress.update(step, description="compiling the deterministic program")
        samples = load_npy(calibration, "calibration") if calibration else None
        program = compile_model(path, samples, batch=batch)
        progress.update(step, description="connecting to the chain")
        ctx = _Registry(connect(rpc_url, keystore))
        draft = draft_input(
            spec, program, name=name, price=parse_units(price, ctx.decimals, what="price"),
            royalty_bps=royalty_bps, modes=allowed, parent=parent, license=license,
        )  # fmt: skip
        precheck(draft)
        ctx.registry.check_parent(parent)
        zk = None
        if Mode.ZK in allowed:
            progress.update(step, description="building the zk circuit (EZKL)")
            zk = publish_zk(
                _backend(max_memory_gb, max_prove_seconds, trusted_srs, verifier="dedicated"),
                ctx.chain,
                path,
                _flat_rows(samples),
                lambda stage, seconds: console.print(
                    f"zk setup: {_STAGES.get(stage, stage):<22} {seconds:7.1f} s"
                ),
            )
        progress.update(step, description="storing the model")
        stored = store_model(open_store(), spec, program, name=name, license=license, parent=parent)
        progress.update(step, description="registering on-chain")
        model = final_input(draft, stored, metadata_uri, zk.circuit if zk else None)
        model_id, receipt = ctx.registry.register(model)
    result = {
        "model_id": model_id,
        "cid": stored.cid,
        "tx": receipt["transactionHash"].to_0x_hex(),
        "manifest_cid": stored.manifest_cid,
        "program_cid": stored.program_cid,
        "program_hash": program.program_hash,
        "weights_root": program.weights_root,
        "steps_root": model.steps_root,
        "name": name,
        "owner": ctx.chain.address,
        "price": model.price,
        "modes": allowed.to_names(),
        "chain_id": ctx.chain.chain_id,
    }
    if zk is not None:
        result["zk"] = zk.to_json()
    if json_out:
        emit_json(result)
        return
    console.print(f"[green]registered[/] model [bold]{model_id}[/] ({name})")
    console.print(f"  cid  {stored.cid}\n  tx   {result['tx']}")
    if zk is not None:
        console.print(f"  zk verifier {zk.verifier}\n  zk artifacts {zk.artifacts_cid}")
        if zk.artifacts.srs_kind == "development":
            console.print(
                "[yellow]warning:[/] the circuit's keys use a locally generated development SRS: "
                "its proofs convince no one who did not make it (pass --trusted-srs in production)"
            )
    console.print(f"next: `verinfer model show {model_id}`")


_STAGES = {
    "settings": "settings/calibration",
    "compile": "compile",
    "srs": "SRS",
    "keys": "keys",
    "verifier": "verifier",
    "deploy": "deploy verifier",
}


def _flat_rows(samples: Any) -> tuple[tuple[float, ...], ...] | None:
    """Calibration samples as flat float rows (one per sample), as EZKL takes them."""
    if samples is None:
        return None
    return tuple(tuple(float(v) for v in row.reshape(-1)) for row in samples)


def _backend(
    max_memory_gb: float | None,
    max_prove_seconds: float | None,
    trusted_srs: Path | None = None,
    verifier: VerifierChoice = "auto",
) -> EzklBackend:
    limits = ZkLimits(
        max_memory_bytes=int(max_memory_gb * 2**30) if max_memory_gb is not None else None,
        max_prove_seconds=max_prove_seconds,
    )
    return EzklBackend(options=ZkOptions(limits=limits, trusted_srs=trusted_srs, verifier=verifier))


@app.command("show")
def show(
    model_id: Annotated[int, typer.Argument(help="Model id")],
    rpc_url: RpcUrlOption = None,
    json_out: JsonOption = False,
) -> None:
    """Show a model as recorded on-chain."""
    ctx = _Registry(connect(rpc_url))
    data = ctx.record_json(ctx.registry.get(model_id))
    if json_out:
        emit_json(data)
        return
    table = Table(show_header=False, box=None)
    for key, value in data.items():
        if key in ("program_hash", "weights_root", "steps_root") and value == ZERO_HASH:
            value = "(not yet compiled)"
        table.add_row(f"[bold]{key}[/]", str(value))
    out.print(table)


@app.command("list")
def list_models(
    rpc_url: RpcUrlOption = None,
    start: Annotated[int, typer.Option("--start", help="First model id")] = 1,
    limit: Annotated[int, typer.Option("--limit", help="How many", min=1, max=1000)] = 100,
    json_out: JsonOption = False,
) -> None:
    """List registered models."""
    ctx = _Registry(connect(rpc_url))
    records = ctx.registry.list(start, limit)
    if json_out:
        emit_json([r.to_dict() for r in records])
        return
    if not records:
        console.print("no models registered yet (add one with `verinfer model add`)")
        return
    table = Table("id", "name", "price", "royalty", "modes", "owner", "cid")
    for r in records:
        name = f"{r.name} [dim](deprecated)[/]" if r.deprecated else r.name
        table.add_row(
            str(r.model_id),
            name,
            ctx.price_text(r.price),
            f"{r.royalty_bps / 100:g}%",
            ",".join(r.modes),
            _short(r.owner),
            _short(r.cid),
        )
    out.print(table)


def _short(text: str) -> str:
    """Abbreviate a long address or CID for a table; `model show` prints it whole."""
    return text if len(text) <= 14 else f"{text[:8]}…{text[-4:]}"


@app.command("set-price")
def set_price(
    model_id: Annotated[int, typer.Argument(help="Model id")],
    price: Annotated[str, typer.Argument(help="New price per inference in tokens")],
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Change a model's price (owner only)."""
    ctx = _Registry(connect(rpc_url, keystore))
    units = parse_units(price, ctx.decimals, what="price")
    receipt = ctx.registry.set_price(model_id, units)
    tx = receipt["transactionHash"].to_0x_hex()
    if json_out:
        emit_json({"model_id": model_id, "price": units, "tx": tx})
    else:
        console.print(f"model {model_id} now costs {ctx.price_text(units)} (tx {tx})")


@app.command("deprecate")
def deprecate(
    model_id: Annotated[int, typer.Argument(help="Model id")],
    undo: Annotated[bool, typer.Option("--undo", help="Serve the model again")] = False,
    rpc_url: RpcUrlOption = None,
    keystore: KeystoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Mark a model deprecated: nodes stop taking new requests for it (owner only)."""
    ctx = _Registry(connect(rpc_url, keystore))
    receipt = ctx.registry.set_deprecated(model_id, not undo)
    tx = receipt["transactionHash"].to_0x_hex()
    if json_out:
        emit_json({"model_id": model_id, "deprecated": not undo, "tx": tx})
    else:
        console.print(f"model {model_id} {'restored' if undo else 'deprecated'} (tx {tx})")


@app.command("estimate")
def estimate(
    path: Annotated[Path, typer.Argument(help="The ONNX file")],
    mode: Annotated[str, typer.Option("--mode", help="Verification mode to price")] = "zk",
    calibration: Annotated[
        Path | None, typer.Option("--calibration", help=".npy of sample inputs")
    ] = None,
    max_memory_gb: MaxMemoryOption = None,
    max_prove_seconds: MaxProveOption = None,
    json_out: JsonOption = False,
) -> None:
    """Cost before work: circuit size, proving time and memory, and verification gas.

    Only calibrates the circuit (seconds); no keys, SRS or proofs are made. Exits 1 with the
    reasons when the estimate exceeds the given limits.
    """
    if mode != "zk":
        raise ModelError(
            f"no cost model for mode {mode!r}",
            hint="only zk needs one: the other modes cost one runtime execution per node",
        )
    inspect_onnx(path)
    samples = _flat_rows(load_npy(calibration, "calibration")) if calibration else None
    backend = _backend(max_memory_gb, max_prove_seconds)
    limits = backend.options.limits
    with console.status("calibrating the circuit (no keys or proofs)..."):
        cost = backend.estimate(ZkModel(path, samples))
    data = {**cost.__dict__, "fits": not limits.exceeded(cost)}
    if json_out:
        emit_json(data)
    else:
        table = Table(show_header=False, box=None)
        table.add_row("[bold]logrows[/]", str(cost.logrows))
        table.add_row("[bold]setup[/]", f"~{cost.setup_seconds:.0f} s (once, at registration)")
        table.add_row("[bold]prove[/]", f"~{cost.prove_seconds:.0f} s per request")
        table.add_row("[bold]peak memory[/]", f"~{cost.peak_memory_bytes / 2**30:.2f} GiB")
        table.add_row("[bold]proving key[/]", f"~{cost.pk_bytes / 2**20:.0f} MiB")
        table.add_row("[bold]verify gas[/]", f"~{cost.verify_gas:,}")
        out.print(table)
    backend.check_limits(cost)
