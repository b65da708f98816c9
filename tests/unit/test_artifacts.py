"""The committed contract artifacts must equal a fresh compile of contracts/src."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from verinfer.chain.artifacts import ARTIFACTS_DIR

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_committed_artifacts_match_a_fresh_build(tmp_path: Path) -> None:
    subprocess.run(["node", str(ROOT / "tools" / "compile.js"), str(tmp_path)], check=True,
                   capture_output=True)  # fmt: skip
    fresh = {p.name: json.loads(p.read_text()) for p in tmp_path.glob("*.json")}
    committed = {p.name: json.loads(p.read_text()) for p in ARTIFACTS_DIR.glob("*.json")}
    assert sorted(fresh) == sorted(committed), "artifact set differs: run `make contracts`"
    for name, artifact in fresh.items():
        assert artifact == committed[name], f"{name} is stale: run `make contracts` and commit"


def test_every_artifact_has_abi_and_bytecode() -> None:
    names = [p.stem for p in ARTIFACTS_DIR.glob("*.json")]
    assert {"ModelRegistry", "TestUSD"} <= set(names)
    for name in names:
        artifact = json.loads((ARTIFACTS_DIR / f"{name}.json").read_text())
        assert artifact["abi"] and len(artifact["bytecode"]) > 2
        # EIP-170: deployable on real chains without a raised code-size limit.
        assert len(artifact["deployedBytecode"]) // 2 - 1 <= 24_576, f"{name} exceeds 24 KiB"
