"""Atomic file writes, so a crash never leaves a half-written file behind, and the JSON state
files written that way (ledgers)."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

from verinfer.errors import ConfigError

T = TypeVar("T")


@contextmanager
def atomic_output(path: Path) -> Iterator[BinaryIO]:
    """A binary file that appears at ``path`` only if the block exits cleanly.

    Written to a temp file in the same directory, fsynced, then renamed over ``path``.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see ``atomic_output``)."""
    with atomic_output(path) as f:
        f.write(data)


def read_json_state(path: Path, parse: Callable[[Any], T], *, what: str, hint: str) -> T | None:
    """``parse`` of the JSON in ``path``, or None if there is no such file yet. A file that
    cannot be read, decoded or parsed (``parse`` raising KeyError, TypeError or ValueError) is
    a ConfigError naming ``what`` and the file: state is never silently reset."""
    if not path.exists():
        return None
    try:
        return parse(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the {what} {path} is unreadable: {exc}", hint=hint) from exc


def write_json_state(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` atomically."""
    write_atomic(path, json.dumps(data, indent=1).encode())
