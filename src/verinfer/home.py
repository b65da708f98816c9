"""Where verinfer keeps its local state: ``$VERINFER_HOME`` or ``~/.verinfer``.

Everything here can be rebuilt from the chain and the store, except the devnet's own state.
"""

from __future__ import annotations

import os
from pathlib import Path


def home_dir() -> Path:
    """The root of local state; ``VERINFER_HOME`` overrides ``~/.verinfer``."""
    env = os.environ.get("VERINFER_HOME")
    return Path(env).expanduser() if env else Path.home() / ".verinfer"


def deployments_dir() -> Path:
    return home_dir() / "deployments"


def devnet_dir() -> Path:
    return home_dir() / "devnet"


def store_dir() -> Path:
    return home_dir() / "store"
