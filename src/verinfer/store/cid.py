"""CIDv1 with a sha2-256 multihash, as the base32 ``b...`` strings that kubo prints.

Written here rather than imported: a CID is an unsigned varint version, a varint codec and a
multihash (varint hash code, varint length, digest), rendered as multibase base32 (prefix
``b``, then RFC 4648 base32 in lower case without padding, which the standard library's
codec does once lower-cased and unpadded). That is about sixty lines, not worth a runtime
dependency; the tests check them against the ``multiformats`` package and kubo's output.
Only what verinfer writes is accepted: version 1, codecs raw and dag-pb, sha2-256.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from dataclasses import dataclass

from verinfer.errors import StoreError

RAW = 0x55
DAG_PB = 0x70
SHA2_256 = 0x12
DIGEST_SIZE = 32
CODEC_NAMES = {RAW: "raw", DAG_PB: "dag-pb"}

_MAX_VARINT_BYTES = 9  # multiformats caps unsigned varints at 63 bits
_BASE32_ALPHABET = frozenset("abcdefghijklmnopqrstuvwxyz234567")


def encode_varint(value: int) -> bytes:
    """Unsigned LEB128, as used by multiformats and by protobuf."""
    if value < 0:
        raise ValueError(f"varint must be non-negative, got {value}")
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_varint(buf: bytes | memoryview, pos: int = 0) -> tuple[int, int]:
    """Read one unsigned varint at ``pos``; return ``(value, next_pos)``. Minimal form only."""
    value = 0
    shift = 0
    start = pos
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            if byte == 0 and pos - start > 1:
                raise ValueError("varint is not in minimal form")
            return value, pos
        shift += 7
        if pos - start >= _MAX_VARINT_BYTES:
            raise ValueError("varint too long")


def _hint_for(text: str) -> str:
    if text.startswith("Qm"):
        return "this looks like a CIDv0; convert it with `ipfs cid base32 <cid>`"
    return "a verinfer CID is a CIDv1 in base32, e.g. bafkrei... (raw) or bafybei... (dag-pb)"


@dataclass(frozen=True, slots=True)
class CID:
    """A CIDv1: ``codec`` (RAW or DAG_PB) and the sha2-256 ``digest`` of the block."""

    codec: int
    digest: bytes

    def __post_init__(self) -> None:
        if self.codec not in CODEC_NAMES:
            raise StoreError(
                f"unsupported CID codec 0x{self.codec:x}",
                hint="verinfer stores raw (0x55) and dag-pb (0x70) blocks only",
            )
        if len(self.digest) != DIGEST_SIZE:
            raise StoreError(
                f"a sha2-256 digest has {DIGEST_SIZE} bytes, got {len(self.digest)}",
                hint="build CIDs with CID.of(data) or CID.parse(text)",
            )

    @classmethod
    def of(cls, block: bytes | memoryview, codec: int = RAW) -> CID:
        """The CID of ``block`` (the exact bytes stored) under ``codec``."""
        return cls(codec, hashlib.sha256(block).digest())

    @property
    def codec_name(self) -> str:
        return CODEC_NAMES[self.codec]

    @property
    def multihash(self) -> bytes:
        return bytes((SHA2_256, DIGEST_SIZE)) + self.digest

    def __bytes__(self) -> bytes:
        """The binary CID: version 1, codec, multihash (as dag-pb links carry it)."""
        return b"\x01" + encode_varint(self.codec) + self.multihash

    def __str__(self) -> str:
        return "b" + base64.b32encode(bytes(self)).decode("ascii").rstrip("=").lower()

    def __repr__(self) -> str:
        return f"CID({str(self)!r})"

    def matches(self, block: bytes | memoryview) -> bool:
        """Whether ``block`` hashes to this CID's digest."""
        return hashlib.sha256(block).digest() == self.digest

    @classmethod
    def from_bytes(cls, raw: bytes | memoryview) -> CID:
        """Decode a binary CIDv1; StoreError names what is wrong."""
        try:
            version, pos = decode_varint(raw)
            if version != 1:
                kind = "a CIDv0 multihash" if version == SHA2_256 else f"CID version {version}"
                raise StoreError(
                    f"{kind} is not supported", hint="verinfer uses CIDv1 (base32 'b...') only"
                )
            codec, pos = decode_varint(raw, pos)
            hash_code, pos = decode_varint(raw, pos)
            size, pos = decode_varint(raw, pos)
        except ValueError as exc:
            raise StoreError(f"malformed CID: {exc}", hint=_hint_for("")) from exc
        if codec not in CODEC_NAMES:
            raise StoreError(
                f"unsupported CID codec 0x{codec:x}",
                hint="verinfer stores raw (0x55) and dag-pb (0x70) blocks only",
            )
        if hash_code != SHA2_256 or size != DIGEST_SIZE:
            raise StoreError(
                f"unsupported multihash (code 0x{hash_code:x}, {size} bytes)",
                hint="verinfer CIDs use sha2-256; re-add the content with the default hash",
            )
        digest = bytes(raw[pos:])
        if len(digest) != DIGEST_SIZE:
            raise StoreError(
                f"malformed CID: digest has {len(digest)} bytes, expected {DIGEST_SIZE}",
                hint=_hint_for(""),
            )
        return cls(codec, digest)

    @classmethod
    def parse(cls, text: str) -> CID:
        """Parse a base32 CIDv1 string (``b...``); StoreError with a hint on anything else."""
        text = text.strip()
        shown = text if len(text) <= 80 else text[:77] + "..."
        if not text.startswith("b") or len(text) < 2:
            raise StoreError(f"not a base32 CIDv1: {shown!r}", hint=_hint_for(text))
        body = text[1:]
        if not set(body) <= _BASE32_ALPHABET:
            raise StoreError(f"not a base32 CIDv1: {shown!r}", hint=_hint_for(text))
        try:
            raw = base64.b32decode(body.upper() + "=" * (-len(body) % 8))
        except binascii.Error as exc:
            raise StoreError(f"not a base32 CIDv1: {shown!r}", hint=_hint_for(text)) from exc
        cid = cls.from_bytes(raw)
        if str(cid) != text:  # non-canonical trailing bits or padding
            raise StoreError(f"not a canonical base32 CIDv1: {shown!r}", hint=_hint_for(text))
        return cid

    @classmethod
    def coerce(cls, value: CID | str) -> CID:
        """Accept a CID or its string form (the public API takes either)."""
        return value if isinstance(value, CID) else cls.parse(value)
