"""Files as UnixFS v1 DAGs, laid out exactly as ``ipfs add --cid-version=1`` does by default.

kubo's defaults (boxo's balanced importer): fixed-size chunks of 262,144 bytes, each stored
as a raw block; a file of one chunk (or none) *is* that raw block. Longer files get dag-pb
nodes of at most 174 links, in a balanced tree: the depth is the smallest one whose capacity
``174**depth`` holds every chunk, and nodes are filled left to right, so only the right edge
can be partly full (down to a chain of one-link nodes). Each node carries a UnixFS ``Data``
message {Type=File, filesize, blocksizes (one per child)}; each link carries the child's CID,
an empty name and ``Tsize``, the cumulative serialized size of the child's whole sub-DAG.

The two protobuf messages (dag-pb ``PBNode``/``PBLink`` and UnixFS ``Data``) are encoded by
hand: a general protobuf library would not promise dag-pb's canonical byte layout (links
before data, fields in number order, the empty ``Name`` kept), and the CIDs depend on it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from verinfer.errors import StoreError
from verinfer.store.cid import CID, DAG_PB, RAW, decode_varint, encode_varint

CHUNK_SIZE = 262_144  # kubo's default chunker, size-262144
MAX_LINKS = 174  # boxo's DefaultLinksPerBlock: 8 KiB / 47-byte links
MAX_DEPTH = 16  # 174**16 chunks is far beyond any file; deeper DAGs are hostile

UNIXFS_RAW = 0
UNIXFS_FILE = 2

BlockSink = Callable[[CID, bytes], None]

_VARINT = 0
_LEN = 2


# -- protobuf encoding (hand-written, see the module docstring) --------------------------------


def _key(field: int, wire_type: int) -> bytes:
    return encode_varint(field << 3 | wire_type)


def _len_field(field: int, payload: bytes) -> bytes:
    return _key(field, _LEN) + encode_varint(len(payload)) + payload


def _varint_field(field: int, value: int) -> bytes:
    return _key(field, _VARINT) + encode_varint(value)


@dataclass(frozen=True, slots=True)
class PBLink:
    """One dag-pb link: the child's CID, its name (empty in files) and cumulative size."""

    cid: CID
    tsize: int
    name: bytes = b""


@dataclass(frozen=True, slots=True)
class PBNode:
    links: tuple[PBLink, ...]
    data: bytes | None


@dataclass(frozen=True, slots=True)
class UnixFSData:
    type: int
    data: bytes | None
    filesize: int | None
    blocksizes: tuple[int, ...]


def encode_pb_node(links: list[PBLink] | tuple[PBLink, ...], data: bytes | None) -> bytes:
    """Canonical dag-pb: every link (field 2) first, then Data (field 1)."""
    out = bytearray()
    for link in links:
        body = (
            _len_field(1, bytes(link.cid))
            + _len_field(2, link.name)  # kubo always writes Name, even when empty
            + _varint_field(3, link.tsize)
        )
        out += _len_field(2, body)
    if data is not None:
        out += _len_field(1, data)
    return bytes(out)


def encode_unixfs_file(filesize: int, blocksizes: list[int], data: bytes | None = None) -> bytes:
    """UnixFS ``Data`` for a file node; blocksizes unpacked (proto2 default), as Go writes it."""
    out = _varint_field(1, UNIXFS_FILE)
    if data is not None:
        out += _len_field(2, data)
    out += _varint_field(3, filesize)
    for size in blocksizes:
        out += _varint_field(4, size)
    return out


# -- protobuf decoding (strict enough to reject garbage, lenient on unknown fields) -----------


def _fields(buf: bytes) -> Iterator[tuple[int, int, int | bytes]]:
    pos = 0
    while pos < len(buf):
        key, pos = decode_varint(buf, pos)
        field, wire_type = key >> 3, key & 7
        if wire_type == _VARINT:
            value, pos = decode_varint(buf, pos)
            yield field, wire_type, value
        elif wire_type == _LEN:
            size, pos = decode_varint(buf, pos)
            if pos + size > len(buf):
                raise ValueError("field runs past the end of the message")
            yield field, wire_type, buf[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported protobuf wire type {wire_type}")


def decode_pb_node(block: bytes) -> PBNode:
    """Decode a dag-pb block; ValueError on malformed input."""
    links: list[PBLink] = []
    data: bytes | None = None
    for field, wire_type, value in _fields(block):
        if field == 2 and isinstance(value, bytes):
            links.append(_decode_link(value))
        elif field == 1 and isinstance(value, bytes):
            data = value
        else:
            raise ValueError(f"unexpected dag-pb field {field} (wire type {wire_type})")
    return PBNode(tuple(links), data)


def _decode_link(buf: bytes) -> PBLink:
    cid: CID | None = None
    name = b""
    tsize = 0
    for field, _, value in _fields(buf):
        if field == 1 and isinstance(value, bytes):
            cid = CID.from_bytes(value)
        elif field == 2 and isinstance(value, bytes):
            name = value
        elif field == 3 and isinstance(value, int):
            tsize = value
        else:
            raise ValueError(f"unexpected dag-pb link field {field}")
    if cid is None:
        raise ValueError("dag-pb link without a Hash")
    return PBLink(cid, tsize, name)


def decode_unixfs(buf: bytes) -> UnixFSData:
    """Decode a UnixFS ``Data`` message (packed or unpacked blocksizes)."""
    kind: int | None = None
    data: bytes | None = None
    filesize: int | None = None
    blocksizes: list[int] = []
    for field, _, value in _fields(buf):
        if field == 1 and isinstance(value, int):
            kind = value
        elif field == 2 and isinstance(value, bytes):
            data = value
        elif field == 3 and isinstance(value, int):
            filesize = value
        elif field == 4 and isinstance(value, int):
            blocksizes.append(value)
        elif field == 4 and isinstance(value, bytes):  # packed encoding, from other writers
            pos = 0
            while pos < len(value):
                size, pos = decode_varint(value, pos)
                blocksizes.append(size)
        # other fields (hashType, fanout, mode, mtime) do not change a file's bytes
    if kind is None:
        raise ValueError("UnixFS Data without a Type")
    return UnixFSData(kind, data, filesize, tuple(blocksizes))


# -- building ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Child:
    cid: CID
    tsize: int  # serialized size of the child's whole sub-DAG
    filesize: int  # file bytes under the child


class FileBuilder:
    """Streams a file into its UnixFS DAG; blocks go to ``sink`` children-first, root last.

    Feed bytes with :meth:`write` (any sizes), then call :meth:`finish` for the root CID.
    Memory stays at one chunk plus one pending link list per tree level.
    """

    def __init__(
        self,
        sink: BlockSink | None = None,
        *,
        chunk_size: int = CHUNK_SIZE,
        max_links: int = MAX_LINKS,
    ) -> None:
        if chunk_size < 1 or max_links < 2:
            raise ValueError("chunk_size must be >= 1 and max_links >= 2")
        self._sink = sink
        self._chunk_size = chunk_size
        self._max_links = max_links
        self._buf = bytearray()
        self._levels: list[list[_Child]] = [[]]  # levels[k]: children waiting for a height-k+1 node
        self._size = 0
        self._finished = False

    @property
    def size(self) -> int:
        """File bytes written so far."""
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._finished:
            raise ValueError("FileBuilder already finished")
        view = memoryview(data).cast("B")
        self._size += len(view)
        while len(view):
            take = min(self._chunk_size - len(self._buf), len(view))
            self._buf += view[:take]
            view = view[take:]
            if len(self._buf) == self._chunk_size:
                self._add_leaf(bytes(self._buf))
                self._buf.clear()

    def finish(self) -> CID:
        if self._finished:
            raise ValueError("FileBuilder already finished")
        self._finished = True
        if self._buf or self._size == 0:  # the empty file is one empty raw block, as in kubo
            self._add_leaf(bytes(self._buf))
            self._buf.clear()
        # Close the right edge bottom-up: every partial level becomes a node of the next one.
        level = 0
        while level < len(self._levels) - 1:
            if self._levels[level]:
                self._push(level + 1, self._make_node(self._levels[level]))
                self._levels[level] = []
            level += 1
        top = self._levels[-1]
        if len(top) == 1 and len(self._levels) == 1:
            return top[0].cid  # a single chunk: the raw leaf is the file
        return self._make_node(top).cid

    def _emit(self, cid: CID, block: bytes) -> None:
        if self._sink is not None:
            self._sink(cid, block)

    def _add_leaf(self, chunk: bytes) -> None:
        cid = CID.of(chunk, RAW)
        self._emit(cid, chunk)
        self._push(0, _Child(cid, len(chunk), len(chunk)))

    def _push(self, level: int, child: _Child) -> None:
        if level == len(self._levels):
            self._levels.append([])
        pending = self._levels[level]
        if len(pending) == self._max_links:
            # This level's node is full and more data follows: close it one level up.
            self._push(level + 1, self._make_node(pending))
            pending = self._levels[level] = []
        pending.append(child)

    def _make_node(self, children: list[_Child]) -> _Child:
        sizes = [c.filesize for c in children]
        data = encode_unixfs_file(sum(sizes), sizes)
        block = encode_pb_node([PBLink(c.cid, c.tsize) for c in children], data)
        cid = CID.of(block, DAG_PB)
        self._emit(cid, block)
        return _Child(cid, len(block) + sum(c.tsize for c in children), sum(sizes))


def read_full(stream: BinaryIO, size: int) -> bytes:
    """Read up to ``size`` bytes, fewer only at end of stream (like Go's io.ReadFull)."""
    parts: list[bytes] = []
    remaining = size
    while remaining:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return b"".join(parts)


def build_stream(
    stream: BinaryIO,
    sink: BlockSink | None = None,
    *,
    chunk_size: int = CHUNK_SIZE,
    max_links: int = MAX_LINKS,
) -> tuple[CID, int]:
    """Import a binary stream; return ``(root CID, file size)``."""
    builder = FileBuilder(sink, chunk_size=chunk_size, max_links=max_links)
    while chunk := read_full(stream, chunk_size):
        builder.write(chunk)
    return builder.finish(), builder.size


def file_cid(
    data: bytes | bytearray | memoryview,
    *,
    chunk_size: int = CHUNK_SIZE,
    max_links: int = MAX_LINKS,
) -> CID:
    """The CID ``ipfs add --cid-version=1`` gives these bytes (with the default settings)."""
    builder = FileBuilder(chunk_size=chunk_size, max_links=max_links)
    builder.write(data)
    return builder.finish()


# -- reading -----------------------------------------------------------------------------------

BlockLoader = Callable[[CID], bytes]


def iter_file(root: CID | str, load: BlockLoader) -> Iterator[bytes]:
    """Yield a file's bytes in order by walking its DAG; ``load`` must return verified blocks.

    The DAG's own bookkeeping (filesize, blocksizes) is checked against what the children
    actually hold, so a well-hashed but inconsistent DAG raises StoreError too.
    """
    root = CID.coerce(root)
    yield from _walk(root, load, depth=0, expected=None)


def _walk(cid: CID, load: BlockLoader, depth: int, expected: int | None) -> Iterator[bytes]:
    if depth > MAX_DEPTH:
        raise StoreError(f"the DAG under {cid} is deeper than {MAX_DEPTH} levels", hint=_BAD_DAG)
    block = load(cid)
    if cid.codec == RAW:
        if expected is not None and len(block) != expected:
            raise StoreError(
                f"block {cid} holds {len(block)} bytes, its parent says {expected}", hint=_BAD_DAG
            )
        yield block
        return
    try:
        node = decode_pb_node(block)
        if node.data is None:
            raise ValueError("dag-pb node without UnixFS data")
        fs = decode_unixfs(node.data)
    except (ValueError, StoreError) as exc:
        raise StoreError(f"block {cid} is not a UnixFS file node: {exc}", hint=_BAD_DAG) from exc
    if fs.type not in (UNIXFS_FILE, UNIXFS_RAW):
        raise StoreError(
            f"{cid} is a UnixFS node of type {fs.type}, not a file",
            hint="verinfer stores single files; fetch directories with an IPFS client",
        )
    if len(fs.blocksizes) != len(node.links):
        raise StoreError(
            f"node {cid} has {len(node.links)} links but {len(fs.blocksizes)} block sizes",
            hint=_BAD_DAG,
        )
    inline = fs.data or b""
    total = len(inline) + sum(fs.blocksizes)
    if (fs.filesize is not None and fs.filesize != total) or (
        expected is not None and expected != total
    ):
        raise StoreError(f"node {cid} has inconsistent sizes", hint=_BAD_DAG)
    if inline:
        yield inline
    for link, size in zip(node.links, fs.blocksizes, strict=True):
        yield from _walk(link.cid, load, depth + 1, size)


_BAD_DAG = "the stored DAG is damaged or was not written by a UnixFS file importer; re-add the file"
