"""The ``Store`` interface and its on-disk implementation, a directory of blocks keyed by CID.

Layout: ``<root>/blocks/<xy>/<cid>``, where ``xy`` are the two characters before the CID's
last one (as kubo's flatfs shards). Each block is written through a temp file, fsync and a
rename, and a file's blocks are written children first, root last: after a crash a root is
either absent or complete, and ``has`` is true only for content that can be read back whole.
A crash may leave orphan leaves or a dot-prefixed ``.tmp`` file behind; neither is ever read.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

import structlog

from verinfer.errors import StoreError
from verinfer.fsutil import atomic_output, write_atomic
from verinfer.home import store_dir
from verinfer.store.cid import CID, RAW
from verinfer.store.unixfs import FileBuilder, build_stream, iter_file

log = structlog.get_logger(__name__)

_READ_SIZE = 1 << 20


@runtime_checkable
class Store(Protocol):
    """Content-addressed blobs. Every read is verified against the CID it was asked for."""

    def put(self, data: bytes) -> CID:
        """Store ``data``; return its CID (identical to kubo's ``ipfs add --cid-version=1``)."""
        ...

    def get(self, cid: CID | str) -> bytes:
        """The bytes of ``cid``; StoreError if unknown or if they fail verification."""
        ...

    def has(self, cid: CID | str) -> bool:
        """Whether ``cid`` can be read from this store."""
        ...

    def put_file(self, path: Path) -> CID:
        """Store a file, streaming it (never more than a chunk or two in memory)."""
        ...

    def get_to_file(self, cid: CID | str, path: Path) -> int:
        """Write the verified bytes of ``cid`` to ``path`` atomically; return the size."""
        ...


def open_input(path: Path) -> BinaryIO:
    """Open a file to store, with a StoreError that names the path when it cannot be read."""
    try:
        if path.is_dir():
            raise StoreError(f"{path} is a directory", hint="store one file at a time")
        return path.open("rb")
    except FileNotFoundError as exc:
        raise StoreError(f"{path} does not exist", hint="check the path") from exc
    except PermissionError as exc:
        raise StoreError(f"cannot read {path}: permission denied", hint="check its mode") from exc


class LocalStore:
    """Blocks in a local directory (default: ``$VERINFER_HOME/store``)."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else store_dir()
        self._blocks = self.root / "blocks"

    def __repr__(self) -> str:
        return f"LocalStore({str(self.root)!r})"

    def block_path(self, cid: CID) -> Path:
        text = str(cid)
        return self._blocks / text[-3:-1] / text

    # -- writing ---------------------------------------------------------------------------

    def _write_block(self, cid: CID, block: bytes) -> None:
        path = self.block_path(cid)
        if path.exists():
            try:
                if cid.matches(path.read_bytes()):
                    return  # already stored intact
            except OSError:
                pass
            log.warning("store.block.repaired", cid=str(cid), path=str(path))
        try:
            write_atomic(path, block)
        except OSError as exc:
            raise StoreError(
                f"cannot write block {cid} under {self.root}: {exc.strerror or exc}",
                hint="check free disk space and permissions, or set VERINFER_HOME",
            ) from exc

    def put(self, data: bytes) -> CID:
        builder = FileBuilder(self._write_block)
        builder.write(data)
        cid = builder.finish()
        log.debug("store.put", cid=str(cid), size=len(data), root=str(self.root))
        return cid

    def put_file(self, path: Path) -> CID:
        with open_input(Path(path)) as stream:
            cid, size = build_stream(stream, self._write_block)
        log.debug("store.put_file", cid=str(cid), size=size, path=str(path))
        return cid

    # -- reading ---------------------------------------------------------------------------

    def _load(self, cid: CID) -> bytes:
        path = self.block_path(cid)
        try:
            block = path.read_bytes()
        except FileNotFoundError:
            raise StoreError(
                f"{cid} is not in the store ({self.root})",
                hint="add it with `verinfer store put FILE`, or point VERINFER_STORE at the "
                "store that has it",
            ) from None
        except OSError as exc:
            raise StoreError(
                f"cannot read block {cid}: {exc.strerror or exc}", hint="check permissions"
            ) from exc
        if not cid.matches(block):
            raise StoreError(
                f"block {cid} is corrupted: its bytes do not hash to its CID ({path})",
                hint="delete that block file and add the content again with `verinfer store put`",
            )
        return block

    def has(self, cid: CID | str) -> bool:
        return self.block_path(CID.coerce(cid)).is_file()

    def iter_chunks(self, cid: CID | str) -> Iterable[bytes]:
        """The file's bytes in order, each block verified as it is read."""
        cid = CID.coerce(cid)
        if cid.codec == RAW:
            return [self._load(cid)]
        return iter_file(cid, self._load)

    def get(self, cid: CID | str) -> bytes:
        return b"".join(self.iter_chunks(cid))

    def get_to_file(self, cid: CID | str, path: Path) -> int:
        chunks = iter(self.iter_chunks(cid))
        first = next(chunks, b"")  # an unknown CID fails here, before the destination is touched
        return write_chunks(Path(path), itertools.chain((first,), chunks))


def write_chunks(path: Path, chunks: Iterable[bytes]) -> int:
    """Stream ``chunks`` into ``path`` atomically; return the number of bytes written."""
    size = 0
    with atomic_output(path) as out:
        for chunk in chunks:
            out.write(chunk)
            size += len(chunk)
    return size
