"""Compiled contract artifacts (ABI + bytecode), committed under ``chain/artifacts/``."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from verinfer.errors import ConfigError

ARTIFACTS_DIR = Path(__file__).parent / "artifacts"


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """The artifact of contract ``name``; raises ConfigError when it was never compiled."""
    path = ARTIFACTS_DIR / f"{name}.json"
    try:
        artifact: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError(
            f"no artifact for contract {name!r}", hint="run `make contracts`"
        ) from exc
    return artifact


def abi(name: str) -> list[dict[str, Any]]:
    return list(load_artifact(name)["abi"])


def all_artifact_names() -> list[str]:
    return sorted(p.stem for p in ARTIFACTS_DIR.glob("*.json"))
