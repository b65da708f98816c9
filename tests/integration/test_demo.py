"""`verinfer demo` from nothing, as a newcomer runs it: a real process, a real devnet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VERINFER_HOME": str(home)}
    env.pop("VERINFER_RPC_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "verinfer", *args], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip


def test_demo_is_complete_and_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    try:
        first = run(home, "demo", "--json")
        assert first.returncode == 0, first.stderr
        out = json.loads(first.stdout)
        assert out["started_devnet"] and out["deployed"] and not out["reused_model"]
        assert out["model_id"] == 1 and out["cid"].startswith("bafk")
        # a node served it and the demo contract received the digit the runtime computes
        assert out["request_id"] == 1 and out["digit"] == out["expected_digit"] == 7
        assert out["consumer"].startswith("0x") and out["fee"] > 0
        second = json.loads(run(home, "demo", "--json").stdout)
        assert (second["started_devnet"], second["deployed"], second["reused_model"]) == (
            False,
            False,
            True,
        )
        assert second["model_id"] == 1 and second["request_id"] == 2
        assert second["consumer"] == out["consumer"]  # reused, not redeployed
        shown = run(home, "model", "show", "1", "--json")
        assert json.loads(shown.stdout)["name"] == "digits"
        human = run(home, "demo")
        assert human.returncode == 0 and "verinfer model show 1" in human.stderr
    finally:
        stop = run(home, "devnet", "stop")
    assert stop.returncode == 0
