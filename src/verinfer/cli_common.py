"""Pieces every CLI sub-command shares: error reporting, chain options, output."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import structlog
import typer
from rich.console import Console
from typer.core import TyperGroup

from verinfer.errors import VerinferError

# Progress and messages go to stderr, results (tables, JSON) to stdout. Off a terminal, Rich
# would wrap at 80 columns and cut addresses and CIDs: use a width that fits them.
console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)
out = Console(width=None if sys.stdout.isatty() else 200)

RpcUrlOption = Annotated[
    str | None,
    typer.Option(
        "--rpc-url", help="EVM JSON-RPC URL (default: $VERINFER_RPC_URL, then the devnet)"
    ),
]
KeystoreOption = Annotated[
    Path | None,
    typer.Option(
        "--keystore",
        help="Encrypted V3 keystore to sign with (password from $VERINFER_KEYSTORE_PASSWORD); "
        "default: $VERINFER_PRIVATE_KEY, or anvil's dev key on the devnet",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout")]


def report(error: VerinferError) -> None:
    """One line on stderr naming the problem, and the fix on the next."""
    hint = f"\n  hint: {error.hint}" if error.hint else ""
    typer.echo(f"error: {error.message}{hint}", err=True)


class VerinferGroup(TyperGroup):
    """Turns every VerinferError raised by any sub-command into a message and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except VerinferError as exc:
            report(exc)
            raise typer.Exit(1) from exc


def configure_logging(verbose: bool) -> None:
    """structlog key/value lines to stderr; only warnings unless --verbose."""
    level = logging.DEBUG if verbose or os.environ.get("VERINFER_DEBUG") else logging.WARNING
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # Resolve sys.stderr at each log call, not once: tests and embedders swap it.
        logger_factory=lambda *_: structlog.PrintLogger(sys.stderr),
    )


def emit_json(data: Any) -> None:
    """Write one JSON document to stdout (for scripts)."""
    typer.echo(json.dumps(data, indent=2, default=str))
