"""`verinfer runtime check|run`: compile a model and run it deterministically."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from verinfer.cli_common import JsonOption, console, emit_json, out
from verinfer.errors import ModelError
from verinfer.runtime import Program, compile_model

app = typer.Typer(help="Compile and run models on the deterministic runtime.", no_args_is_help=True)

BatchOption = Annotated[int, typer.Option("--batch", help="Bind a dynamic batch dim to N")]
CalibrationOption = Annotated[
    Path | None,
    typer.Option("--calibration", help=".npy of sample inputs (single-input models)"),
]


def load_npy(path: Path, what: str) -> np.ndarray[Any, Any]:
    try:
        value = np.load(path, allow_pickle=False)
    except FileNotFoundError as exc:
        raise ModelError(f"{what} file {path} does not exist") from exc
    except (ValueError, OSError, EOFError) as exc:
        raise ModelError(
            f"{what} file {path} is not a valid .npy array: {exc}", hint="save it with numpy.save"
        ) from exc
    if not isinstance(value, np.ndarray):
        raise ModelError(f"{what} file {path} holds several arrays", hint="use a single .npy")
    return value


def _compile(model: Path, batch: int, calibration: Path | None) -> Program:
    samples = load_npy(calibration, "calibration") if calibration else None
    with console.status("compiling to the fixed-point program..."):
        return compile_model(model, samples, batch=batch)


def describe(program: Program) -> dict[str, Any]:
    return {
        "program_hash": program.program_hash,
        "weights_root": program.weights_root,
        "steps": len(program.steps),
        "ops": sorted({s.op for s in program.steps}),
        "constants": len(program.constants),
        "inputs": [t.to_json() for t in program.inputs],
        "outputs": [t.to_json() for t in program.outputs],
    }


@app.command("check")
def check(
    model: Annotated[Path, typer.Argument(help="ONNX file")],
    batch: BatchOption = 1,
    calibration: CalibrationOption = None,
    json_out: JsonOption = False,
) -> None:
    """Compile a model: refuse it with every unsupported op named, or print its hashes."""
    info = describe(_compile(model, batch, calibration))
    if json_out:
        emit_json(info)
        return
    table = Table(show_header=False, box=None)
    for key in ("program_hash", "weights_root", "steps", "constants"):
        table.add_row(f"[bold]{key}[/]", str(info[key]))
    table.add_row("[bold]ops[/]", ", ".join(info["ops"]))
    out.print(table)
    console.print("[green]supported[/]: the model compiles to a deterministic program")


@app.command("run")
def run(
    model: Annotated[Path, typer.Argument(help="ONNX file")],
    input_path: Annotated[Path, typer.Option("--input", help=".npy input (single-input models)")],
    batch: BatchOption = 1,
    calibration: CalibrationOption = None,
    json_out: JsonOption = False,
) -> None:
    """Run a model on an input: outputs, trace_root, program_hash, weights_root."""
    program = _compile(model, batch, calibration)
    execution = program.run(load_npy(input_path, "input"))
    result = {
        "outputs": [o.tolist() for o in execution.outputs],
        "outputs_q": [o.tolist() for o in execution.outputs_q],
        "trace_root": execution.trace_root,
        "program_hash": program.program_hash,
        "weights_root": program.weights_root,
        "saturated": execution.saturated,
    }
    if json_out:
        emit_json(result)
        return
    for tensor, value in zip(program.outputs, execution.outputs, strict=True):
        out.print(f"[bold]{tensor.name}[/] {list(tensor.shape)}")
        out.print(np.array2string(value, precision=6, suppress_small=True))
    for key in ("trace_root", "program_hash", "weights_root"):
        out.print(f"[bold]{key}[/] {result[key]}")
    if execution.saturated:
        console.print(
            f"[yellow]warning[/]: values saturated (outside the calibrated range): "
            f"{execution.saturated}"
        )
