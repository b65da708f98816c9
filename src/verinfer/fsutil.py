"""Atomic file writes, so a crash never leaves a half-written file behind, and the JSON state
files written that way (ledgers) that threads and processes share."""

from __future__ import annotations

import fcntl
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

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


def _read_json_state(path: Path, parse: Callable[[Any], T], *, what: str, hint: str) -> T | None:
    """``parse`` of the JSON in ``path``, or None if there is no such file yet. A file that
    cannot be read, decoded or parsed (``parse`` raising KeyError, TypeError or ValueError) is
    a ConfigError naming ``what`` and the file: state is never silently reset."""
    if not path.exists():
        return None
    try:
        return parse(json.loads(path.read_text()))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"the {what} {path} is unreadable: {exc}", hint=hint) from exc


class SharedJsonState(Generic[T]):
    """A state kept as JSON at ``path`` and shared by threads and processes: each ``open()``
    reads it under an exclusive lock (a thread lock, and ``flock`` on a sibling ``.lock``
    file) and writes it back atomically if the block changed it. Nobody works from a stale
    copy: two processes on one ledger see each other's changes, never overwrite them.

    ``parse`` builds the state from the JSON, ``dump`` gives the JSON back, ``empty`` is the
    state before the file exists; ``what`` and ``hint`` go into an unreadable file's error."""

    def __init__(
        self,
        path: Path,
        *,
        parse: Callable[[Any], T],
        dump: Callable[[T], Any],
        empty: Callable[[], T],
        what: str,
        hint: str,
    ) -> None:
        self.path = path
        self._parse, self._dump, self._empty = parse, dump, empty
        self._what, self._hint = what, hint
        self._lock = threading.Lock()

    @contextmanager
    def open(self) -> Iterator[T]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.with_name(self.path.name + ".lock")
        with self._lock, lock.open("a") as held:
            fcntl.flock(held, fcntl.LOCK_EX)  # released when the file closes
            state = _read_json_state(self.path, self._parse, what=self._what, hint=self._hint)
            if state is None:
                state = self._empty()
            before = self._dump(state)
            yield state
            after = self._dump(state)
            if after != before:
                write_atomic(self.path, json.dumps(after, indent=1).encode())
