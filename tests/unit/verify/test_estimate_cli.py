"""`verinfer model estimate`: cost before work, and refusal above the given limits."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from verinfer.cli import app

pytestmark = pytest.mark.zk
runner = CliRunner()
MLP = Path(__file__).resolve().parents[3] / "examples" / "models" / "digits_mlp.onnx"


def test_estimate_reports_the_circuit_cost() -> None:
    result = runner.invoke(app, ["model", "estimate", str(MLP), "--json"])
    assert result.exit_code == 0, result.output
    cost = json.loads(result.stdout)
    assert cost["logrows"] >= 10 and cost["fits"] is True
    assert cost["peak_memory_bytes"] > 0 and 100_000 < cost["verify_gas"] < 5_000_000


def test_estimate_refuses_over_the_limits_with_the_reason() -> None:
    result = runner.invoke(app, ["model", "estimate", str(MLP), "--max-memory-gb", "0.01"])
    assert result.exit_code == 1
    assert "exceeds the limit" in result.output and "hint:" in result.output


def test_estimate_rejects_other_modes_and_bad_files(tmp_path: Path) -> None:
    other = runner.invoke(app, ["model", "estimate", str(MLP), "--mode", "consensus"])
    assert other.exit_code == 1 and "no cost model" in other.output
    (tmp_path / "x.onnx").write_text("nope")
    bad = runner.invoke(app, ["model", "estimate", str(tmp_path / "x.onnx")])
    assert bad.exit_code == 1 and "not a valid ONNX" in bad.output
