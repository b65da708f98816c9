"""`verinfer store ...`: put files into the content-addressed store and get them back by CID."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from verinfer.cli_common import JsonOption, console, emit_json
from verinfer.errors import StoreError
from verinfer.store.cid import CID
from verinfer.store.ipfs import STORE_ENV, IpfsStore, open_store
from verinfer.store.local import LocalStore, Store

app = typer.Typer(
    help="Content-addressed blobs: CIDv1 (sha2-256), in the local store or on an IPFS node.",
    no_args_is_help=True,
)

StoreOption = Annotated[
    str | None,
    typer.Option(
        "--store",
        help=f"'local', 'local:PATH' or an IPFS API URL (default: ${STORE_ENV}, then local)",
    ),
]


@app.command("put")
def put(
    file: Annotated[Path, typer.Argument(help="The file to store", show_default=False)],
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Store FILE and print its CID (the same CID `ipfs add --cid-version=1` gives)."""
    backend = open_store(store)
    cid = backend.put_file(file)
    size = file.stat().st_size
    if json_out:
        emit_json({"cid": str(cid), "size": size})
        return
    console.print(f"[green]stored[/] {file} ({size:,} bytes) in {_where(backend)}")
    typer.echo(str(cid))


@app.command("get")
def get(
    cid: Annotated[str, typer.Argument(help="The CID to fetch (bafk... or bafy...)")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the bytes", show_default=False)
    ],
    force: Annotated[bool, typer.Option("--force", help="Overwrite OUTPUT if it exists")] = False,
    store: StoreOption = None,
    json_out: JsonOption = False,
) -> None:
    """Fetch CID, verify every byte against it, and write it to OUTPUT atomically."""
    parsed = CID.parse(cid)
    if output.is_dir():
        raise StoreError(f"{output} is a directory", hint="give a file name, e.g. -o model.onnx")
    if output.exists() and not force:
        raise StoreError(f"{output} already exists", hint="pass --force to overwrite it")
    backend = open_store(store)
    size = backend.get_to_file(parsed, output)
    if json_out:
        emit_json({"cid": str(parsed), "size": size, "path": str(output)})
        return
    console.print(
        f"[green]verified[/] {parsed} -> {output} ({size:,} bytes) from {_where(backend)}"
    )


def _where(backend: Store) -> str:
    if isinstance(backend, LocalStore):
        return f"the local store {backend.root}"
    if isinstance(backend, IpfsStore):
        return f"the IPFS node {backend.api_url}"
    return repr(backend)
